"""
Data-parallel natural-gradient updates over ``torch.distributed`` (gloo on CPU, NCCL on GPU).

Each rank (process) collects its own rollouts with its own envs; the update is then the one of a single process
holding all the ranks' samples (equal numbers of samples per rank): every quantity that is a mean over the batch is
averaged across the ranks with an all-reduce, and everything else is computed identically on every rank, so the
parameters stay bit for bit equal everywhere. :class:`DataParallel` holds the collectives the update needs:

- the mean and standard deviation of the advantages over all ranks' samples (:meth:`DataParallel.normalize`);
- the policy gradient ``g`` and the objective (:meth:`DataParallel.mean`);
- each Fisher-vector product ``F v`` (:meth:`DataParallel.mean`; conjugate gradient then runs identically on every
  rank);
- the objective and KL of each line-search candidate (:meth:`DataParallel.mean_values`);
- the critic's regression data: every rank gathers all ranks' inputs and returns once per update
  (:meth:`DataParallel.gather`) and fits the critic on them in rank 0's order of minibatches
  (:meth:`DataParallel.broadcast`), with no collective per Adam step; the fitted critic is then rank 0's
  (:meth:`DataParallel.broadcast_tensors`), bit for bit, even across machines whose kernels round differently;
- for RecurrentTRPO, whose critic minibatches are sequences of each rank's buffer, the critic's gradients of each
  minibatch, with its loss so that a minibatch is skipped on all ranks or on none (:meth:`DataParallel.mean_gradients`);
- the initial parameters (:meth:`DataParallel.broadcast_parameters`, from rank 0);
- ``VecNormalize``'s running statistics (:meth:`DataParallel.share_running_statistics`): each rank's observations
  and returns since the last update, merged, so that every rank normalizes with the statistics of all ranks' data.

The model's ``num_timesteps`` counts the steps of all ranks (:class:`CountAllRanksSteps`), as SB3 counts those of
all ``n_envs`` envs: the logs, the budget of ``learn``, the schedules, the checkpoints and the saved model read the
samples the job consumed.

The process group is the user's (``torch.distributed.init_process_group``, e.g. under ``torchrun``); its timeout
bounds how long a rank waits for a dead or hung peer before raising. :class:`DataParallelCheckpoint` saves the job's
state periodically (:func:`save_checkpoint`) and :func:`load_checkpoint` resumes a restarted job from the last one.
A rank ends its job with :func:`close_process_group` rather than ``torch.distributed.destroy_process_group`` alone.
"""

import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch as th
import torch.distributed as dist
from stable_baselines3.common.callbacks import BaseCallback, ProgressBarCallback
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_wrapper
from torch import nn

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm


# How long close_process_group releases the GIL for gloo's worker threads (see there)
GLOO_RELEASE_S = 0.1


def close_process_group() -> None:
    """
    ``torch.distributed.destroy_process_group``, then let gloo's worker threads release the last collectives' tensors.

    A gloo worker thread frees the tensors of a collective just after the collective completes, and freeing a tensor
    that Python created takes the GIL. When the process exits right after its last collective, that thread may ask for
    the GIL only once the interpreter is finalizing, which aborts the process ("terminate called without an active
    exception", SIGABRT) after a job that succeeded: about one exit in four on this 2-core machine for two ranks that
    build a model and exit. Sleeping a moment releases the GIL to those threads while the interpreter is alive; no
    collective is made, so that a rank whose peer died still closes.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    time.sleep(GLOO_RELEASE_S)


class Moments(NamedTuple):
    """Mean, (population) variance and count of some data, as SB3's ``RunningMeanStd`` keeps them."""

    mean: np.ndarray
    var: np.ndarray
    n: float


def moments_added(before: Moments, after: Moments) -> Moments:
    """
    The moments of the data a ``RunningMeanStd`` took in between two of its states.

    ``RunningMeanStd.update_from_moments`` merges a batch into the running moments exactly (the parallel-variance
    formula); this inverts it: with ``m = after.n - before.n`` and ``delta = (after.mean - before.mean) * after.n / m``,
    the data's mean is ``before.mean + delta`` and its sum of squared deviations is
    ``after.var * after.n - before.var * before.n - delta^2 * before.n * m / after.n``. (Several
    batches taken in one after the other are one batch: the formula is exact for their union.)

    :param before: the statistics at the last synchronization
    :param after: the statistics now
    :return: the moments of the data taken in since (count 0: none)
    """
    count = after.n - before.n
    if count <= 0:
        return Moments(np.zeros_like(after.mean), np.zeros_like(after.var), 0.0)
    delta = (after.mean - before.mean) * after.n / count
    squares = after.var * after.n - before.var * before.n - delta * delta * before.n * count / after.n
    return Moments(before.mean + delta, np.maximum(squares, 0.0) / count, count)


def _moments(rms: RunningMeanStd) -> Moments:
    return Moments(np.array(rms.mean, dtype=np.float64), np.array(rms.var, dtype=np.float64), float(rms.count))


def _running_stats(env: VecEnv | None) -> dict[str, RunningMeanStd]:
    # VecNormalize's running statistics by name (obs_rms is a dict of them for Dict observations), or none
    vec_normalize = unwrap_vec_wrapper(env, VecNormalize) if env is not None else None
    if not isinstance(vec_normalize, VecNormalize):
        return {}
    stats: dict[str, RunningMeanStd] = {"ret_rms": vec_normalize.ret_rms}
    if isinstance(vec_normalize.obs_rms, dict):
        stats.update({f"obs_rms/{key}": rms for key, rms in vec_normalize.obs_rms.items()})
    elif vec_normalize.obs_rms is not None:
        stats["obs_rms"] = vec_normalize.obs_rms
    return stats


class CountAllRanksSteps(BaseCallback):
    """
    Make ``num_timesteps`` count the steps of all ranks: after each step of this rank's ``n_envs`` envs (which the
    rollout loop has just counted), the other ranks' as many steps (every rank steps the same number of envs at once).

    The first callback of a data-parallel model's ``learn`` (``NaturalGradientAlgorithm._init_callback``), so that every
    other callback, the logs (``time/total_timesteps``, ``time/fps``), the budget and the schedules' progress remaining
    read the job's count, as SB3 counts the steps of all ``n_envs`` envs of one process.

    :param world_size: the number of ranks
    """

    def __init__(self, world_size: int) -> None:
        super().__init__()
        self.world_size = world_size

    def _on_step(self) -> bool:
        self.model.num_timesteps += (self.world_size - 1) * self.training_env.num_envs
        return True


class AllRanksProgressBar(ProgressBarCallback):
    """
    SB3's progress bar (``learn(progress_bar=True)``, the RL Zoo's ``--progress``) on a rank of a data-parallel job: it
    advances by the steps of all ranks, as ``num_timesteps`` does (:class:`CountAllRanksSteps`).

    :param world_size: the number of ranks
    """

    def __init__(self, world_size: int) -> None:
        super().__init__()
        self.world_size = world_size

    def _on_step(self) -> bool:
        self.pbar.update(self.training_env.num_envs * self.world_size)
        return True


# Up to this many gloo ranks, means are taken by all-gather and sum (DataParallel.mean)
GATHER_MEAN_MAX_RANKS = 8


class DataParallel:
    """
    The collectives of a data-parallel update, over the default process group.

    :param device: the device of the tensors reduced (CPU with gloo; the rank's GPU with NCCL)
    :raises RuntimeError: when no process group is initialized
    """

    def __init__(self, device: th.device) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "data_parallel=True needs an initialized torch.distributed process group: launch with torchrun, or call "
                "torch.distributed.init_process_group(...) before creating the model"
            )
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device
        # With gloo (CPU), a mean over a few ranks is an all-gather then a sum in rank order on every rank: the same
        # bits everywhere, and about twice as fast as gloo's all-reduce for the update's small tensors (2 ranks over
        # loopback here: 0.5-1.0 ms against 1.6-2.3 ms for 30 to 5,000 floats). NCCL's all-reduce is used as it is.
        self._mean_by_gather = dist.get_backend() == "gloo" and self.world_size <= GATHER_MEAN_MAX_RANKS
        # VecNormalize's statistics at the last synchronization (the same on every rank), by name
        self._shared_moments: dict[str, Moments] = {}

    def mean(self, tensor: th.Tensor) -> th.Tensor:
        """
        :param tensor: this rank's value (e.g. the mean over its samples)
        :return: the mean of the ranks' values, the same tensor on every rank (a new tensor)
        """
        total = tensor.detach().clone()
        if self._mean_by_gather:
            parts = [th.empty_like(total) for _ in range(self.world_size)]
            dist.all_gather(parts, total)
            total = parts[0]
            for part in parts[1:]:
                total += part
        else:
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world_size

    def mean_values(self, *values: float) -> tuple[float, ...]:
        """
        :param values: this rank's scalars
        :return: the mean of each over the ranks (one collective for all of them)
        """
        means = self.mean(th.tensor(values, dtype=th.float64, device=self.device))
        return tuple(float(value) for value in means.cpu())

    def normalize(self, advantages: th.Tensor, eps: float = 1e-8) -> th.Tensor:
        """
        Advantages shifted and scaled by the mean and (unbiased) standard deviation of all ranks' samples.

        :param advantages: this rank's advantages, shape (batch,)
        :param eps: added to the std to avoid a division by zero
        :return: the normalized advantages, shape (batch,)
        """
        # mean = sum(A) / n, var = (sum(A^2) - n mean^2) / (n - 1), over all ranks' samples
        moments = th.stack([advantages.sum(), (advantages * advantages).sum()]).double()
        count = th.tensor(float(advantages.numel()), dtype=th.float64, device=advantages.device)
        totals = self.mean(th.cat([moments, count.view(1)])) * self.world_size
        total, total_squares, n = totals[0], totals[1], totals[2]
        mean = total / n
        if n < 2:
            return advantages - mean.to(advantages.dtype)
        std = ((total_squares - n * mean * mean).clamp(min=0.0) / (n - 1)).sqrt()
        return (advantages - mean.to(advantages.dtype)) / (std.to(advantages.dtype) + eps)

    def mean_gradients(self, params: Sequence[nn.Parameter], loss: float) -> float:
        """
        Replace each parameter's ``.grad`` by its mean over the ranks (one collective for all), in place.

        :param params: the parameters whose gradients were just computed (a missing ``.grad`` counts as zero)
        :param loss: this rank's loss for these gradients
        :return: the mean loss over the ranks (not finite when any rank's is not)
        """
        grads = [param.grad if param.grad is not None else th.zeros_like(param) for param in params]
        flat = th.cat([grad.reshape(-1) for grad in grads] + [th.tensor([loss], dtype=grads[0].dtype, device=grads[0].device)])
        flat = self.mean(flat)
        offset = 0
        for param, grad in zip(params, grads, strict=True):
            numel = grad.numel()
            if param.grad is None:
                param.grad = grad
            param.grad.copy_(flat[offset : offset + numel].view_as(grad))
            offset += numel
        return float(flat[-1])

    def gather(self, tensor: th.Tensor) -> th.Tensor:
        """
        All ranks' tensors concatenated along the first dimension in rank order, on every rank (the first dimensions may
        differ between ranks; the others must be equal).

        :param tensor: this rank's tensor, shape (n_rank, ...)
        :return: shape (sum of the ranks' n_rank, ...)
        """
        tensor = tensor.detach().contiguous()
        sizes = [th.zeros(1, dtype=th.int64, device=tensor.device) for _ in range(self.world_size)]
        dist.all_gather(sizes, th.tensor([tensor.shape[0]], dtype=th.int64, device=tensor.device))
        counts = [int(size) for size in sizes]
        largest = max(counts)
        if tensor.shape[0] < largest:
            padding = tensor.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))
            tensor = th.cat([tensor, padding])
        parts = [th.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return th.cat([part[:count] for part, count in zip(parts, counts, strict=True)])

    def broadcast(self, tensor: th.Tensor, src: int = 0) -> th.Tensor:
        """
        :param tensor: on rank ``src``, the tensor to share; elsewhere, one of the same shape and dtype (overwritten)
        :param src: the rank whose tensor every rank receives
        :return: ``tensor``, now holding rank ``src``'s values on every rank
        """
        dist.broadcast(tensor, src=src)
        return tensor

    def broadcast_tensors(self, tensors: Sequence[th.Tensor], src: int = 0) -> None:
        """
        Give every rank rank ``src``'s values of these tensors (e.g. some parameters), in place, in one collective.

        :param tensors: tensors of one dtype and device, the same shapes on every rank
        :param src: the rank whose values every rank receives
        """
        if not tensors:
            return
        with th.no_grad():
            flat = self.broadcast(th.cat([tensor.detach().reshape(-1) for tensor in tensors]), src=src)
            offset = 0
            for tensor in tensors:
                tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
                offset += tensor.numel()

    def broadcast_parameters(self, module: nn.Module) -> None:
        """
        Give every rank rank 0's parameters and buffers (e.g. the initial weights).

        :param module: the module (policy)
        """
        with th.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def share_running_statistics(self, env: VecEnv | None) -> None:
        """
        Give every rank the ``VecNormalize`` statistics of all ranks' data (no-op without ``VecNormalize``).

        Each rank's data since the last synchronization (:func:`moments_added`) is merged over the ranks and into the
        statistics shared then, on every rank alike. The first call only records the statistics to start from (the
        same on every rank: fresh, or loaded from the same file).

        :param env: the training env (VecNormalize anywhere in its wrappers)
        """
        for name, rms in _running_stats(env).items():
            current = _moments(rms)
            shared = self._shared_moments.get(name)
            if shared is None:
                self._shared_moments[name] = current
                continue
            added = moments_added(shared, current)
            # Sum over the ranks of count, count * mean and count * (var + mean^2), in one collective
            moments = [added.n * added.mean.ravel(), added.n * (added.var + added.mean**2).ravel()]
            flat = np.concatenate([[added.n], *moments])
            totals = self.mean(th.as_tensor(flat, dtype=th.float64, device=self.device)).cpu().numpy() * self.world_size
            size = added.mean.size
            count = float(totals[0])
            rms.mean, rms.var, rms.count = shared.mean.copy(), shared.var.copy(), shared.n
            if count > 0:
                mean = totals[1 : 1 + size] / count
                var = np.maximum(totals[1 + size :] / count - mean * mean, 0.0)
                rms.update_from_moments(mean.reshape(shared.mean.shape), var.reshape(shared.var.shape), count)
            self._shared_moments[name] = _moments(rms)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints: a data-parallel job restarted (e.g. by torchrun --max-restarts) resumes from the last one
# ---------------------------------------------------------------------------------------------------------------------

CHECKPOINT_MODEL = "model.zip"
CHECKPOINT_VEC_NORMALIZE = "vec_normalize.pkl"


def _rng_file(folder: Path, rank: int) -> Path:
    return folder / f"rng_rank{rank}.pt"


def save_checkpoint(model: "BaseAlgorithm", folder: str | Path) -> None:
    """
    Save a data-parallel job's state, collectively (every rank calls it at the same point).

    Rank 0 writes the model (parameters, optimizer state, options, step count) and VecNormalize's statistics; every
    rank writes its random generators' states (torch, NumPy, Python). The files go to a new folder that replaces the
    previous checkpoint only once every rank has written (a crash while saving leaves the previous checkpoint whole).
    The folder must be visible to every rank (one machine, or a shared filesystem).

    :param model: the model (``data_parallel=True``)
    :param folder: the checkpoint folder
    """
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".saving")
    rank = dist.get_rank()
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    dist.barrier()
    rng = {"torch": th.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    th.save(rng, _rng_file(staging, rank))
    if rank == 0:
        model.save(staging / CHECKPOINT_MODEL)
        training_env = model.get_env()
        vec_normalize = unwrap_vec_wrapper(training_env, VecNormalize) if training_env is not None else None
        if isinstance(vec_normalize, VecNormalize):
            vec_normalize.save(str(staging / CHECKPOINT_VEC_NORMALIZE))
    dist.barrier()
    if rank == 0:
        previous = folder.with_name(folder.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        if folder.exists():
            folder.rename(previous)
        staging.rename(folder)
        shutil.rmtree(previous, ignore_errors=True)
    dist.barrier()


def load_checkpoint(
    algorithm: type["BaseAlgorithm"], folder: str | Path, env: VecEnv, **kwargs: Any
) -> "BaseAlgorithm | None":
    """
    Resume a data-parallel job from its last checkpoint, collectively (every rank calls it); None when there is none.

    Loads the model (``data_parallel=True``), VecNormalize's statistics into ``env`` (which must wrap the same
    ``VecNormalize`` layout as when saved) and this rank's random generators. Continue with
    ``model.learn(remaining_timesteps, reset_num_timesteps=False)`` (SB3 adds the budget to the steps already taken;
    ``model.num_timesteps`` and the budget both count the steps of all ranks): the envs start new episodes.

    :param algorithm: the model's class (TRPO, NPG, ...)
    :param folder: the checkpoint folder of :func:`save_checkpoint`
    :param env: this rank's training env
    :param kwargs: more arguments of ``algorithm.load``
    :return: the model, or None when the folder holds no checkpoint
    """
    folder = Path(folder)
    if not (folder / CHECKPOINT_MODEL).exists():
        return None
    vec_normalize = unwrap_vec_wrapper(env, VecNormalize)
    if isinstance(vec_normalize, VecNormalize) and (folder / CHECKPOINT_VEC_NORMALIZE).exists():
        saved = VecNormalize.load(str(folder / CHECKPOINT_VEC_NORMALIZE), vec_normalize.venv)
        vec_normalize.obs_rms, vec_normalize.ret_rms = saved.obs_rms, saved.ret_rms
    model = algorithm.load(folder / CHECKPOINT_MODEL, env=env, data_parallel=True, **kwargs)
    rng = th.load(_rng_file(folder, dist.get_rank()), weights_only=False)
    th.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return model


class DataParallelCheckpoint(BaseCallback):
    """
    Save a data-parallel job's checkpoint (:func:`save_checkpoint`) every ``every_n_updates`` updates.

    :param folder: the checkpoint folder
    :param every_n_updates: updates between checkpoints
    """

    def __init__(self, folder: str | Path, every_n_updates: int = 10) -> None:
        super().__init__()
        if every_n_updates < 1:
            raise ValueError(f"`every_n_updates` must be an integer >= 1, got {every_n_updates!r}")
        self.folder = Path(folder)
        self.every_n_updates = every_n_updates

    def _on_rollout_start(self) -> None:
        # After an update (the rollouts start after each train()), on every rank at the same update
        n_updates = int(getattr(self.model, "_n_updates", 0))
        if n_updates > 0 and n_updates % self.every_n_updates == 0:
            save_checkpoint(self.model, self.folder)

    def _on_step(self) -> bool:
        return True
