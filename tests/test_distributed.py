"""Data-parallel training on torch.distributed: 2 gloo ranks over loopback against 1 process on the whole batch."""

import os
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
import torch.distributed as dist
import torch.multiprocessing as mp
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.logger import KVWriter

from sb3_trpo import NPG, TRPO
from sb3_trpo.common.distributed import close_process_group
from sb3_trpo.common.natural_gradient import get_flat_params

N_STEPS = 64
SETTINGS = dict(n_steps=N_STEPS, n_critic_updates=3, policy_kwargs=dict(net_arch=[16]), seed=0, target_kl=0.05)
BATCH_SIZE = 32  # the critic's minibatch, of the union of the ranks' samples
CRITIC_SEED = 7
BUFFER_ARRAYS = ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _init(rank: int, port: int, timeout_s: int = 120) -> None:
    th.set_num_threads(1)
    init_method = f"tcp://127.0.0.1:{port}"
    timeout = timedelta(seconds=timeout_s)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=2, timeout=timeout)


def _one_update_on_half_the_batch(rank: int, port: int, folder: str) -> None:
    # Rank r holds env column r of the reference rollout, starts from the reference's weights, and updates once
    _init(rank, port)
    try:
        model = TRPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1), batch_size=BATCH_SIZE, data_parallel=True, **SETTINGS)
        model.policy.load_state_dict(th.load(Path(folder) / "initial.pt"))
        data = np.load(Path(folder) / "rollout.npz")
        buffer = model.rollout_buffer
        for name in BUFFER_ARRAYS:
            getattr(buffer, name)[:] = data[name][:, rank : rank + 1]
        buffer.pos, buffer.full, buffer.generator_ready = N_STEPS, True, False
        model._logger = None  # type: ignore[assignment]
        from stable_baselines3.common.logger import configure

        model.set_logger(configure(None, []))
        # Rank 0 draws the critic's minibatches, from the reference's generator state; the buffer is read in order, so
        # that the gathered batch (rank 0's samples, then rank 1's) is the reference's (env 0's, then env 1's)
        th.manual_seed(CRITIC_SEED)
        np.random.permutation = np.arange  # type: ignore[assignment]
        model.train()
        np.save(Path(folder) / f"after_{rank}.npy", get_flat_params(list(model.policy.parameters())).numpy())
    finally:
        close_process_group()


def test_one_update_on_two_ranks_holding_halves_equals_one_process_on_the_whole_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reference: one process, 2 envs, one rollout, one update; the ranks fit the critic on the gathered batch in
    # the same minibatches (4 per epoch: not the halves each rank holds), drawn from the same generator state
    reference = TRPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), batch_size=BATCH_SIZE, **SETTINGS)
    th.save(reference.policy.state_dict(), tmp_path / "initial.pt")
    _, callback = reference._setup_learn(2 * N_STEPS)
    assert reference.collect_rollouts(reference.env, callback, reference.rollout_buffer, N_STEPS)
    buffer = reference.rollout_buffer
    np.savez(tmp_path / "rollout.npz", **{name: getattr(buffer, name) for name in BUFFER_ARRAYS})
    before = get_flat_params(list(reference.policy.parameters())).clone()
    th.manual_seed(CRITIC_SEED)
    with monkeypatch.context() as patch:
        patch.setattr(np.random, "permutation", np.arange)  # the buffer in order (env 0's samples, then env 1's)
        reference.train()
    expected = get_flat_params(list(reference.policy.parameters())).numpy()

    mp.spawn(_one_update_on_half_the_batch, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [np.load(tmp_path / f"after_{rank}.npy") for rank in range(2)]
    assert np.array_equal(ranks[0], ranks[1]), "the ranks' parameters differ"
    assert not np.allclose(expected, before.numpy()), "the update should move the parameters"
    np.testing.assert_allclose(ranks[0], expected, rtol=1e-4, atol=1e-6)


class _SameParametersOnEveryRank(BaseCallback):
    """After every update (at each rollout's start), all ranks hold bit-identical parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.n_checked = 0

    def _on_rollout_start(self) -> None:
        flat = get_flat_params(list(self.model.policy.parameters()))
        gathered = [th.empty_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, flat)
        assert all(th.equal(gathered[0], other) for other in gathered[1:])
        self.n_checked += 1

    def _on_step(self) -> bool:
        return True


def _learn_on_two_ranks(rank: int, port: int, folder: str, algos: list[str]) -> None:
    # Every algorithm in turn in one process group: 2 new interpreters in all rather than 2 per algorithm (~4 s each)
    _init(rank, port)
    try:
        for algo in algos:
            try:
                _learn_one_algorithm(rank, folder, algo)
            except Exception as error:
                error.add_note(f"(algorithm {algo!r}, rank {rank})")
                raise
    finally:
        close_process_group()


def _learn_one_algorithm(rank: int, folder: str, algo: str) -> None:
    import rl_zoo3.import_envs  # noqa: F401 (CartPoleNoVel-v1)

    import sb3_trpo.envs  # noqa: F401 (InvalidActionsDiscrete-v0)
    from sb3_trpo import MaskableRecurrentTRPO, MaskableTRPO, RecurrentTRPO

    algorithm, policy, env_id, policy_kwargs = {
        "trpo": (TRPO, "MlpPolicy", "CartPole-v1", {}),
        "npg": (NPG, "MlpPolicy", "CartPole-v1", {}),
        "trpo_mask": (MaskableTRPO, "MlpPolicy", "InvalidActionsDiscrete-v0", {}),
        "trpo_lstm": (RecurrentTRPO, "MlpLstmPolicy", "CartPoleNoVel-v1", dict(lstm_hidden_size=8)),
        "trpo_mask_lstm": (MaskableRecurrentTRPO, "MlpLstmPolicy", "InvalidActionsDiscrete-v0", dict(lstm_hidden_size=8)),
        # The critic with its own features extractor: the Dict observations themselves are gathered
        "trpo_dict": (TRPO, "MultiInputPolicy", make_vec_env(SimpleMultiObsEnv), dict(share_features_extractor=False)),
    }[algo]
    settings = {**SETTINGS, "policy_kwargs": {**SETTINGS["policy_kwargs"], **policy_kwargs}}  # type: ignore[dict-item]
    model = algorithm(policy, env_id, batch_size=32, data_parallel=True, verbose=1, **settings)
    check = _SameParametersOnEveryRank()
    model.learn(4 * N_STEPS * 2, callback=check)  # all ranks' steps: 4 rollouts of 64 steps per rank
    # Same rollouts? No: each rank its own envs (seed + rank), so the observations differ
    observations = model.rollout_buffer.observations
    arrays = list(observations.values()) if isinstance(observations, dict) else [observations]
    first = th.as_tensor(np.concatenate([array.reshape(len(array), -1) for array in arrays], axis=1))
    gathered = [th.empty_like(first) for _ in range(2)]
    dist.all_gather(gathered, first)
    assert not th.equal(gathered[0], gathered[1])
    assert model.num_timesteps == 4 * N_STEPS * 2 and check.n_checked == 4  # all ranks' steps
    # Only rank 0 reports
    assert model.verbose == (1 if rank == 0 else 0)
    (Path(folder) / f"ok_{algo}_{rank}").write_text("ok")


def test_parameters_stay_identical_on_every_rank_and_the_budget_counts_all_ranks(tmp_path: Path) -> None:
    # All six in one job (a failure names its algorithm and rank in the spawned process's traceback)
    algos = ["trpo", "npg", "trpo_mask", "trpo_lstm", "trpo_mask_lstm", "trpo_dict"]
    mp.spawn(_learn_on_two_ranks, args=(_free_port(), str(tmp_path), algos), nprocs=2, join=True)
    assert all((tmp_path / f"ok_{algo}_{rank}").exists() for algo in algos for rank in range(2))


class _RecordDumps(KVWriter):
    """The key-values of each dump of a logger."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.rows.append(dict(key_values))

    def close(self) -> None:
        pass


class _RecordSteps(BaseCallback):
    """``num_timesteps`` as a callback sees it at each step."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []

    def _on_step(self) -> bool:
        self.steps.append(self.num_timesteps)
        return True


def _count_on_two_ranks(rank: int, port: int, folder: str) -> None:
    from stable_baselines3.common.logger import Logger

    from sb3_trpo.common.distributed import AllRanksProgressBar

    _init(rank, port)
    try:
        progress: list[float] = []

        def learning_rate(progress_remaining: float) -> float:
            progress.append(progress_remaining)  # SB3 reads the schedule at construction and at each update
            return 1e-3

        model = TRPO(
            "MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2), batch_size=N_STEPS, data_parallel=True,
            learning_rate=learning_rate, **SETTINGS,
        )  # fmt: skip
        dumps, steps = _RecordDumps(), _RecordSteps()
        model.set_logger(Logger(None, [dumps]))
        per_rollout = N_STEPS * 2 * 2  # 2 envs on each of 2 ranks
        budget = 3 * per_rollout - 100  # not a multiple of the rollout: 3 rollouts
        model.learn(budget, callback=steps)
        # num_timesteps counts all ranks' steps: as every callback sees it at each step (4 steps: 2 envs x 2 ranks),
        # as logged, and at the end
        assert model.num_timesteps == 3 * per_rollout
        assert steps.steps == list(range(4, 3 * per_rollout + 1, 4))
        assert [row["time/total_timesteps"] for row in dumps.rows] == [per_rollout, 2 * per_rollout, 3 * per_rollout]
        # The schedules' progress remaining: 1 - all ranks' steps / the budget, at each update
        expected = [1.0] + [1.0 - k * per_rollout / budget for k in (1, 2, 3)]
        assert list(dict.fromkeys(progress)) == pytest.approx(expected)
        # Resuming: SB3 adds the budget to the steps taken, both of all ranks; the progress bar advances by them too
        progress.clear()
        bar = AllRanksProgressBar(2)
        model.learn(2 * per_rollout, reset_num_timesteps=False, callback=bar)
        assert model.num_timesteps == 5 * per_rollout and model._n_updates == 5
        assert list(dict.fromkeys(progress)) == pytest.approx([1.0 - 4 / 5, 0.0])
        assert bar.pbar.n == bar.pbar.total == 2 * per_rollout
        (Path(folder) / f"ok_{rank}").write_text("ok")
    finally:
        close_process_group()


def test_num_timesteps_logs_schedules_and_resuming_count_all_ranks_steps(tmp_path: Path) -> None:
    mp.spawn(_count_on_two_ranks, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    assert all((tmp_path / f"ok_{rank}").exists() for rank in range(2))


def _gather_and_broadcast(rank: int, port: int, folder: str) -> None:
    from sb3_trpo.common.distributed import DataParallel

    _init(rank, port)
    try:
        parallel = DataParallel(th.device("cpu"))
        # Rank r holds r + 2 rows: the gathered tensor is rank 0's rows, then rank 1's, on both ranks
        mine = th.arange(3 * (rank + 2), dtype=th.float32).view(rank + 2, 3) + 100 * rank
        gathered = parallel.gather(mine)
        expected = th.cat([th.arange(6.0).view(2, 3), th.arange(9.0).view(3, 3) + 100])
        assert th.equal(gathered, expected)
        # broadcast_tensors: rank 0's values in every tensor, in place
        tensors = [th.full((2, 2), float(rank)), th.full((3,), 10.0 + rank)]
        parallel.broadcast_tensors(tensors)
        assert th.equal(tensors[0], th.zeros(2, 2)) and th.equal(tensors[1], th.full((3,), 10.0))
        # mean: all-gather and sum (gloo, few ranks) or all-reduce (NCCL, many ranks), the same means
        values = th.tensor([1.0 + rank, 2.0 * rank, -3.0])
        assert parallel._mean_by_gather
        by_gather = parallel.mean(values)
        parallel._mean_by_gather = False
        by_all_reduce = parallel.mean(values)
        assert th.equal(by_gather, th.tensor([1.5, 1.0, -3.0])) and th.equal(by_all_reduce, by_gather)
        (Path(folder) / f"ok_{rank}").write_text("ok")
    finally:
        close_process_group()


def test_gather_broadcast_and_mean_collectives(tmp_path: Path) -> None:
    mp.spawn(_gather_and_broadcast, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    assert all((tmp_path / f"ok_{rank}").exists() for rank in range(2))


def test_data_parallel_needs_a_process_group() -> None:
    with pytest.raises(RuntimeError, match=r"data_parallel=True needs an initialized torch\.distributed process group"):
        TRPO("MlpPolicy", "CartPole-v1", data_parallel=True)
    with pytest.raises(ValueError, match="`data_parallel`"):
        TRPO("MlpPolicy", "CartPole-v1", data_parallel="yes")  # type: ignore[arg-type]


def test_moments_added_recovers_the_data_a_running_mean_std_took_in() -> None:
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    from sb3_trpo.common.distributed import Moments, moments_added

    rng = np.random.default_rng(0)
    rms = RunningMeanStd(shape=(3,))
    rms.update(rng.normal(2.0, 3.0, size=(50, 3)))
    before = Moments(rms.mean.copy(), rms.var.copy(), rms.count)
    added = [rng.normal(-1.0, 0.5, size=(7, 3)) for _ in range(5)]  # several batches, one after the other
    for batch in added:
        rms.update(batch)
    moments = moments_added(before, Moments(rms.mean.copy(), rms.var.copy(), rms.count))
    union = np.concatenate(added)
    assert moments.n == pytest.approx(35)
    np.testing.assert_allclose(moments.mean, union.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(moments.var, union.var(axis=0), rtol=1e-7)


def _normalized_learn_on_two_ranks(rank: int, port: int, folder: str) -> None:
    from stable_baselines3.common.vec_env import VecNormalize

    _init(rank, port)
    try:
        env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1))
        model = TRPO("MlpPolicy", env, batch_size=N_STEPS, data_parallel=True, **SETTINGS)
        # Record every raw observation and reward this rank's VecNormalize takes in
        seen_obs, seen_returns = [], []
        update_obs, update_ret = env.obs_rms.update, env.ret_rms.update
        env.obs_rms.update = lambda batch: (seen_obs.append(np.array(batch)), update_obs(batch))[1]  # type: ignore[method-assign]
        env.ret_rms.update = lambda batch: (seen_returns.append(np.array(batch)), update_ret(batch))[1]  # type: ignore[method-assign]
        model.learn(2 * N_STEPS * 2)
        model._reducer.share_running_statistics(model.env)  # the last rollout's data too
        np.savez(
            Path(folder) / f"stats_{rank}.npz",
            mean=env.obs_rms.mean, var=env.obs_rms.var, count=env.obs_rms.count, ret_mean=env.ret_rms.mean,
            seen=np.concatenate(seen_obs),
        )  # fmt: skip
    finally:
        close_process_group()


def test_vec_normalize_statistics_are_those_of_all_ranks_data(tmp_path: Path) -> None:
    mp.spawn(_normalized_learn_on_two_ranks, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    stats = [np.load(tmp_path / f"stats_{rank}.npz") for rank in range(2)]
    for key in ("mean", "var", "count", "ret_mean"):
        assert np.array_equal(stats[0][key], stats[1][key]), key
    # The observations of both ranks, merged into the initial statistics (mean 0, var 1, count 1e-4)
    union = np.concatenate([stats[0]["seen"], stats[1]["seen"]])
    assert not np.allclose(stats[0]["seen"][:5], stats[1]["seen"][:5]), "each rank has its own envs"
    assert float(stats[0]["count"]) == pytest.approx(len(union) + 1e-4)
    np.testing.assert_allclose(stats[0]["mean"], union.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[0]["var"], union.var(axis=0), rtol=1e-3)


class _DieAtUpdate(BaseCallback):
    """Rank 1 dies (as a killed process would) at the given update, after that update's checkpoint."""

    def __init__(self, update: int) -> None:
        super().__init__()
        self.update = update

    def _on_rollout_start(self) -> None:
        if dist.get_rank() == 1 and self.model._n_updates == self.update:
            os._exit(1)

    def _on_step(self) -> bool:
        return True


def _normalized_env():  # type: ignore[no-untyped-def]
    from stable_baselines3.common.vec_env import VecNormalize

    return VecNormalize(make_vec_env("Pendulum-v1", n_envs=1))


def _run_until_a_rank_dies(rank: int, port: int, folder: str) -> None:
    from sb3_trpo.common.distributed import DataParallelCheckpoint

    _init(rank, port, timeout_s=30)
    model = TRPO("MlpPolicy", _normalized_env(), batch_size=N_STEPS, data_parallel=True, **SETTINGS)
    callbacks = [DataParallelCheckpoint(Path(folder) / "checkpoint", every_n_updates=1), _DieAtUpdate(3)]
    start = time.monotonic()
    try:
        model.learn(10 * N_STEPS * 2, callback=callbacks)
    except Exception as error:  # rank 0: its peer is gone
        (Path(folder) / "rank0_error.txt").write_text(f"{type(error).__name__} after {time.monotonic() - start:.0f} s")
        raise
    finally:
        close_process_group()  # rank 0 then exits with its error (1), not aborted by gloo's threads at exit


def _resume(rank: int, port: int, folder: str) -> None:
    from sb3_trpo.common.distributed import DataParallelCheckpoint, load_checkpoint

    _init(rank, port)
    try:
        checkpoint = Path(folder) / "checkpoint"
        model = load_checkpoint(TRPO, checkpoint, _normalized_env())
        assert model is not None and model._n_updates == 3 and model.num_timesteps == 3 * N_STEPS * 2
        saved_rng = th.load(checkpoint / f"rng_rank{rank}.pt", weights_only=False)
        assert th.equal(th.get_rng_state(), saved_rng["torch"])
        assert model.get_env().obs_rms.count > 3 * N_STEPS  # VecNormalize's statistics came back (both ranks' data)
        check = _SameParametersOnEveryRank()
        # The remaining 3 updates (SB3's reset_num_timesteps=False adds the budget to the steps already taken)
        model.learn(3 * N_STEPS * 2, reset_num_timesteps=False, callback=[check, DataParallelCheckpoint(checkpoint, 1)])
        assert model.num_timesteps == 6 * N_STEPS * 2 and model._n_updates == 6 and check.n_checked == 3
        (Path(folder) / f"resumed_{rank}").write_text("ok")
    finally:
        close_process_group()


def test_a_dead_rank_stops_the_others_and_the_job_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    # Two processes joined one by one (mp.spawn would kill the survivor as soon as one rank fails)
    context, port = mp.get_context("spawn"), _free_port()
    processes = [context.Process(target=_run_until_a_rank_dies, args=(rank, port, str(tmp_path))) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    assert [process.exitcode for process in processes] == [1, 1], "both ranks must stop with an error"
    # The surviving rank raised (did not hang) within the process group's timeout
    message = (tmp_path / "rank0_error.txt").read_text()
    assert float(message.split(" after ")[1].split()[0]) < 60, message
    checkpoint = TRPO.load(tmp_path / "checkpoint" / "model.zip")
    assert checkpoint._n_updates == 3 and checkpoint.num_timesteps == 3 * N_STEPS * 2  # both ranks' steps
    mp.spawn(_resume, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    assert all((tmp_path / f"resumed_{rank}").exists() for rank in range(2))
