"""`python -m sb3_trpo train|enjoy`: tiny-budget runs through the command line, and bad input."""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import optuna
import pytest
import torch as th

pytest.importorskip("rl_zoo3", reason='the RL Zoo is an optional dependency: pip install "sb3_trpo[extra]"')

import sb3_trpo
from rl_zoo3.utils import create_test_env, get_saved_hyperparams
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_trpo import NPG, TRPO, MaskableRecurrentTRPO, MaskableTRPO, RecurrentTRPO
from sb3_trpo.zoo.cli import EXIT_BAD_INPUT, EXIT_MISSING_DEPENDENCY, main
from sb3_trpo.common.natural_gradient import get_flat_params

th.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
EVALUATION_LINE = re.compile(
    r"^Evaluation of the final model over (\d+) episodes: mean_reward=(-?[\d.]+) \+/- ([\d.]+)$", re.MULTILINE
)
# Small and fast: one thread, no periodic evaluation unless a test asks for it
FAST = ["--num-threads", "1", "--eval-freq", "-1"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # Import sb3_trpo from this checkout, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "sb3_trpo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable[..., subprocess.CompletedProcess]:
    """
    `python -m sb3_trpo ARGS` in this process: ``main`` (what ``__main__`` calls), as ``run_cli`` returns it, without the
    ~4 s of imports of a new interpreter; the commands through a real subprocess are test_train_then_enjoy's and
    test_bad_input_in_a_subprocess_is_one_line's (and the signal and torchrun tests').
    """

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            returncode = main(list(args))
        stdout, stderr = capsys.readouterr()
        return subprocess.CompletedProcess(["sb3_trpo", *args], returncode, stdout, stderr)

    return run


def test_train_then_enjoy(tmp_path: Path) -> None:
    train = run_cli(
        "train", "--env", "CartPole-v1", "-n", "256", "--seed", "0", "--final-eval-episodes", "3", *FAST,
        "-params", "n_steps:64", "batch_size:64", "n_critic_updates:2",
        cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    match = EVALUATION_LINE.search(train.stdout)
    assert match is not None, train.stdout[-3000:]
    assert int(match.group(1)) == 3
    assert 0 < float(match.group(2)) <= 500
    # Written where the Zoo writes (logs/trpo/ENV_ID_N), loads with our class, and is our class
    run_folder = tmp_path / "logs" / "trpo" / "CartPole-v1_1"
    model = TRPO.load(run_folder / "CartPole-v1.zip")
    assert type(model) is TRPO and model.n_steps == 64 and model.n_critic_updates == 2
    # The saved configuration: zoo_configs/trpo.yml's entry with the -params overrides
    saved, _ = get_saved_hyperparams(str(run_folder / "CartPole-v1"))
    assert saved["n_steps"] == 64 and saved["cg_damping"] == 0.001 and saved["n_envs"] == 2

    enjoy = run_cli("enjoy", "--env", "CartPole-v1", "--no-render", "-n", "600", "--num-threads", "1", cwd=tmp_path)
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]
    assert f"Loading {Path('logs', 'trpo', 'CartPole-v1_1', 'CartPole-v1.zip')}" in enjoy.stdout
    assert "Mean reward:" in enjoy.stdout


def test_train_with_the_zoos_linear_schedule_for_target_kl(tmp_path: Path, cli: Callable) -> None:
    # `target_kl: lin_0.03` in a hyperparameter file, as the Zoo writes schedules: 0.03 * progress remaining
    conf = tmp_path / "trpo.yml"
    entry = {"policy": "'MlpPolicy'", "n_timesteps": 256, "n_steps": 64, "batch_size": 64, "target_kl": "lin_0.03"}
    conf.write_text("Pendulum-v1:\n" + "".join(f"  {name}: {value}\n" for name, value in entry.items()))
    train = cli(
        "train", "--env", "Pendulum-v1", "-n", "256", "--seed", "0", "--final-eval-episodes", "0", *FAST,
        "-conf", str(conf), cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    model = TRPO.load(tmp_path / "logs" / "trpo" / "Pendulum-v1_1" / "Pendulum-v1.zip")
    assert model.target_kl(1.0) == 0.03 and model.target_kl(0.5) == 0.015
    # the radii of the updates whose logs SB3 prints (after 1, 2, 3 of the 4 rollouts; the last update's are not)
    assert re.findall(r"target_kl_effective\s+\| ([\d.e-]+)", train.stdout) == ["0.0225", "0.015", "0.0075"]


def test_train_normalize_and_zoo_options(tmp_path: Path, cli: Callable) -> None:
    # MountainCarContinuous-v0 has `normalize: true`; also the Zoo's subprocess envs, checkpoints,
    # periodic evaluation, tensorboard and progress bar
    env_id, seed = "MountainCarContinuous-v0", 3
    train = cli(
        "train", "--env", env_id, "-n", "256", "--seed", str(seed), "--final-eval-episodes", "2",
        "--num-threads", "1", "--vec-env", "subproc", "--save-freq", "128", "--eval-freq", "256",
        "--eval-episodes", "1", "--tensorboard-log", "tb", "--progress",
        "-params", "n_steps:64", "batch_size:64", "n_critic_updates:1",
        cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    run_folder = tmp_path / "logs" / "trpo" / f"{env_id}_1"
    params_path = run_folder / env_id
    assert (params_path / "vecnormalize.pkl").is_file()
    assert sorted(path.name for path in run_folder.glob("rl_model_*_steps.zip")) == [
        "rl_model_128_steps.zip",
        "rl_model_256_steps.zip",
    ]
    assert (run_folder / "evaluations.npz").is_file()
    assert list((tmp_path / "tb" / env_id).glob("TRPO_1/events.out.tfevents.*"))

    # The reported evaluation is the one of the saved model on an environment with the saved statistics
    match = EVALUATION_LINE.search(train.stdout)
    assert match is not None, train.stdout[-3000:]
    model = TRPO.load(run_folder / f"{env_id}.zip")
    hyperparams, stats_path = get_saved_hyperparams(str(params_path), test_mode=True)
    env = create_test_env(env_id, n_envs=1, stats_path=stats_path, seed=seed, should_render=False, hyperparams=hyperparams)
    assert env.obs_rms.count > 1  # type: ignore[attr-defined]
    returns, _ = evaluate_policy(model, env, n_eval_episodes=2, deterministic=True, return_episode_rewards=True)
    env.close()
    assert f"{np.mean(returns):.2f}" == match.group(2)


def test_optimize_two_trials(tmp_path: Path, cli: Callable) -> None:
    # The Zoo's TRPO sampler on our class; seed 48 of the random sampler draws two cheap trials (256 steps per env and
    # update: one rollout of the 512-step budget each)
    optimize = cli(
        "train", "--env", "CartPole-v1", "-optimize", "--n-trials", "2", "-n", "512", "--n-evaluations", "1",
        "--eval-episodes", "2", "--sampler", "random", "--pruner", "none", "--no-optim-plots", "--seed", "48",
        "--num-threads", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert optimize.returncode == 0, optimize.stderr[-3000:]
    assert "Number of finished trials:  2" in optimize.stdout
    best = optimize.stdout[optimize.stdout.index("Best trial:") :]
    assert re.search(r"Value:\s+-?[\d.]+", best)
    assert re.search(r"target_kl: [\d.e-]+", best) and re.search(r"n_critic_updates: \d+", best)
    assert len(list((tmp_path / "logs" / "trpo").glob("report_CartPole-v1_2-trials-512-random-none_*.csv"))) == 1


def test_optimize_with_trial_seeds_averages_runs_on_consecutive_seeds(tmp_path: Path, cli: Callable) -> None:
    # Each trial trains on --seed and --seed + 1; the trial's value is the mean of the two runs' last evaluations.
    # Seed 48 of the random sampler draws a cheap trial (256 steps per env and update: one rollout of the budget)
    def tune(folder: str, trial_seeds: int = 2) -> optuna.Study:
        (tmp_path / folder).mkdir()
        storage = f"sqlite:///{tmp_path / folder / 'study.db'}"
        result = cli(
            "train", "--env", "Pendulum-v1", "-optimize", "--n-trials", "1", "--trial-seeds", str(trial_seeds), "-n", "512",
            "--n-evaluations", "1", "--eval-episodes", "1", "--sampler", "random", "--pruner", "median",
            "--no-optim-plots", "--seed", "48", "--num-threads", "1", "--storage", storage, "--study-name", "seeds",
            cwd=tmp_path / folder,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return optuna.load_study(study_name="seeds", storage=storage)

    first, again = tune("first"), tune("again")
    (trial,) = first.trials
    values = trial.user_attrs["seed_values"]
    assert trial.state == optuna.trial.TrialState.COMPLETE and len(values) == 2
    assert trial.value == pytest.approx(np.mean(values), rel=1e-12)
    assert values[0] != values[1]  # two seeds, two runs
    last_step = max(trial.intermediate_values)
    assert trial.intermediate_values[last_step] == values[0]  # the pruner saw the first run's evaluations only
    # Each run is seeded: the same command gives the same runs
    assert again.trials[0].user_attrs["seed_values"] == values and again.trials[0].params == trial.params
    # The first run is the Zoo's one run of the trial on --seed
    (single,) = tune("single", trial_seeds=1).trials
    assert single.params == trial.params and single.value == values[0] and "seed_values" not in single.user_attrs


BAD_INPUTS = {
    "unknown env id": (["--env", "CartPol-v1"], None, r"unknown environment id 'CartPol-v1'.*did you mean 'CartPole-v1'"),
    "missing entry": (["--env", "Acrobot-v1"], "Pendulum-v1:\n  policy: MlpPolicy\n", r"no entry for 'Acrobot-v1'"),
    "malformed yaml": (["--env", "CartPole-v1"], "CartPole-v1:\n  policy: [MlpPolicy\n", r"malformed YAML in .*bad\.yml"),
    "unknown name in file": (
        ["--env", "CartPole-v1"],
        "CartPole-v1:\n  policy: MlpPolicy\n  n_timesteps: 100\n  cg_dampin: 0.1\n",
        r"unknown hyperparameter 'cg_dampin' for TRPO in the entry 'CartPole-v1'.*did you mean 'cg_damping'",
    ),
    "unknown name in -params": (["--env", "CartPole-v1", "-params", "target_kll:0.1"], None, r"unknown hyperparameter"),
    "set by the zoo": (["--env", "CartPole-v1", "-params", "seed:1"], None, r"'seed' .* is set by the RL Zoo"),
    "rejected value": (
        ["--env", "CartPole-v1", "-params", "target_kl:-1", "n_steps:64"],
        None,
        r"cannot set up TRPO on CartPole-v1: ValueError: `target_kl` must be a number > 0, .* got -1$",
    ),
    "other algorithm": (
        ["--algo", "ppo"],
        None,
        r"runs --algo trpo, npg, trpo_mask, trpo_lstm, trpo_mask_lstm \(got --algo ppo\)",
    ),
    "no such trained agent": (["-i", "missing.zip"], None, r"--trained-agent missing\.zip is not a saved model"),
    "negative budget": (["-n", "-5"], None, r"error: -n/--n-timesteps must be a number of steps > 0, got -5 \(leave it out"),
    "zero budget": (["--n-timesteps", "0"], None, r"-n/--n-timesteps must be a number of steps > 0, got 0 "),
    "budget not a number": (["-n", "1e4x"], None, r"argument -n/--n-timesteps: invalid int value: '1e4x'$"),
    "-params with =": (
        ["-params", "target_kl=-1"],
        None,
        r"-params/--hyperparams takes KEY:VALUE pairs, got 'target_kl=-1' \(write target_kl:-1\)$",
    ),
    "-params without key": (["-params", ":3"], None, r"takes KEY:VALUE pairs, got ':3' \(e\.g\. target_kl:0\.02\)$"),
    "-params value not python": (
        ["-params", "n_steps:abc"],
        None,
        r"-params: the value of n_steps must be a Python expression .* got 'abc': NameError",
    ),
    "-params value of the wrong type": (
        ["-params", "n_steps:'abc'"],
        None,
        r"cannot set up TRPO on CartPole-v1: hyperparameter n_steps of TRPO must be an integer, got 'abc' \(str\)$",
    ),
    "-params boolean of the wrong type": (
        ["--algo", "npg", "-params", "use_sde:1"],
        None,
        r"cannot set up NPG on CartPole-v1: hyperparameter use_sde of NPG must be true or false, got 1 \(int\)$",
    ),
    "-params schedule of the wrong type": (
        ["-params", "target_kl:[0.01]"],
        None,
        r"target_kl of TRPO must be a number, a string or a callable \(a schedule of the progress remaining\), got",
    ),
    "zoo key of the wrong type": (["-params", "n_envs:'2'"], None, r"n_envs in -params must be an integer, got '2' \(str\)$"),
    "wrong type in the file": (
        ["--env", "CartPole-v1"],
        "CartPole-v1:\n  policy: MlpPolicy\n  n_timesteps: 100\n  n_steps: 64\n  gamma: '0.99'\n",
        r"hyperparameter gamma of TRPO must be a number, got '0\.99' \(str\)$",
    ),
    "no trial seed": (["-optimize", "--trial-seeds", "0"], None, r"--trial-seeds must be >= 1 .* got 0$"),
    "trial seeds without tuning": (["--trial-seeds", "3"], None, r"--trial-seeds is for tuning .* add -optimize"),
    "trial seeds in threads": (
        ["-optimize", "--trial-seeds", "2", "--n-jobs", "2"],
        None,
        r"--trial-seeds seeds each run .* use --n-jobs 1",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    args, config, message = BAD_INPUTS[case]
    monkeypatch.chdir(tmp_path)
    if config is not None:
        (tmp_path / "bad.yml").write_text(config)
        args = [*args, "-conf", "bad.yml"]
    assert main(["train", *args, *FAST]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and re.search(message, error), error
    # Nothing written that could pass for a run
    assert not (tmp_path / "logs").exists()


def test_bad_input_in_a_subprocess_is_one_line(tmp_path: Path) -> None:
    result = run_cli("train", "--env", "NoSuchEnv-v0", cwd=tmp_path)
    assert result.returncode == EXIT_BAD_INPUT
    expected = "sb3_trpo train: error: unknown environment id 'NoSuchEnv-v0' (not in the Gymnasium registry)"
    assert result.stderr.strip() == expected
    assert not (tmp_path / "logs").exists()


def test_npg_train_then_enjoy(tmp_path: Path, cli: Callable) -> None:
    # --algo npg: zoo_configs/npg.yml's entry, logs/npg/ENV_ID_N, and the model is sb3_trpo's NPG
    train = cli(
        "train", "--algo", "npg", "--env", "Pendulum-v1", "-n", "256", "--seed", "0", "--final-eval-episodes", "2",
        *FAST, "-params", "n_steps:64", "batch_size:64", "n_critic_updates:2",
        cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert EVALUATION_LINE.search(train.stdout) is not None, train.stdout[-3000:]
    run_folder = tmp_path / "logs" / "npg" / "Pendulum-v1_1"
    model = NPG.load(run_folder / "Pendulum-v1.zip")
    assert type(model) is NPG and model.n_steps == 64
    saved, _ = get_saved_hyperparams(str(run_folder / "Pendulum-v1"))
    assert saved["gamma"] == 0.9 and saved["use_sde"] is True  # npg.yml's Pendulum-v1 entry

    enjoy = cli(
        "enjoy", "--algo", "npg", "--env", "Pendulum-v1", "--no-render", "-n", "50", "--num-threads", "1", cwd=tmp_path
    )
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]

    bad = cli("train", "--algo", "npg", "--env", "Pendulum-v1", "-params", "line_search_max_iter:3", cwd=tmp_path)
    assert bad.returncode == EXIT_BAD_INPUT
    assert "unknown hyperparameter 'line_search_max_iter' for NPG" in bad.stderr


def test_trpo_mask_train_with_masked_evaluations_then_enjoy(tmp_path: Path, cli: Callable) -> None:
    # --algo trpo_mask: zoo_configs/trpo_mask.yml, the Zoo's evaluations under masks (MaskableEvalCallback), the final
    # evaluation under masks, and enjoy
    train = cli(
        "train", "--algo", "trpo_mask", "--env", "InvalidActionsDiscrete-v0", "-n", "1024", "--seed", "0",
        "--final-eval-episodes", "2", "--num-threads", "1", "--eval-freq", "512", "--eval-episodes", "2",
        "-params", "n_envs:1", "n_steps:256", "batch_size:256", "n_critic_updates:2",
        cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert EVALUATION_LINE.search(train.stdout) is not None, train.stdout[-3000:]
    run_folder = tmp_path / "logs" / "trpo_mask" / "InvalidActionsDiscrete-v0_1"
    model = MaskableTRPO.load(run_folder / "InvalidActionsDiscrete-v0.zip")
    assert type(model) is MaskableTRPO and model.n_steps == 256
    assert len(np.load(run_folder / "evaluations.npz")["results"]) == 2
    enjoy = cli(
        "enjoy", "--algo", "trpo_mask", "--env", "InvalidActionsDiscrete-v0", "--no-render", "-n", "50",
        "--num-threads", "1", cwd=tmp_path,
    )  # fmt: skip
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]
    tune = cli("train", "--algo", "trpo_mask", "--env", "InvalidActionsDiscrete-v0", "-optimize", cwd=tmp_path)
    assert tune.returncode == EXIT_BAD_INPUT and "does not pass action masks" in tune.stderr


def test_trpo_lstm_train_then_enjoy(tmp_path: Path, cli: Callable) -> None:
    # --algo trpo_lstm: zoo_configs/trpo_lstm.yml's entry (normalized, LSTM policy), then enjoy with the LSTM states
    train = cli(
        "train", "--algo", "trpo_lstm", "--env", "CartPoleNoVel-v1", "-n", "256", "--seed", "0",
        "--final-eval-episodes", "2", *FAST,
        "-params", "n_envs:2", "n_steps:64", "batch_size:64", "n_critic_updates:2", "policy_kwargs:dict(lstm_hidden_size=8)",
        cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert EVALUATION_LINE.search(train.stdout) is not None, train.stdout[-3000:]
    run_folder = tmp_path / "logs" / "trpo_lstm" / "CartPoleNoVel-v1_1"
    model = RecurrentTRPO.load(run_folder / "CartPoleNoVel-v1.zip")
    assert type(model) is RecurrentTRPO and model.policy.lstm_actor.hidden_size == 8
    enjoy = cli(
        "enjoy", "--algo", "trpo_lstm", "--env", "CartPoleNoVel-v1", "--no-render", "-n", "50", "--num-threads", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]


def test_trpo_mask_lstm_train_with_masked_evaluations_then_enjoy(tmp_path: Path, cli: Callable) -> None:
    # --algo trpo_mask_lstm: zoo_configs/trpo_mask_lstm.yml, evaluations under masks with the LSTM states, enjoy
    train = cli(
        "train", "--algo", "trpo_mask_lstm", "--env", "InvalidActionsDiscrete-v0", "-n", "256", "--seed", "0",
        "--final-eval-episodes", "2", "--num-threads", "1", "--eval-freq", "128", "--eval-episodes", "2",
        "-params", "n_envs:1", "n_steps:128", "batch_size:128", "n_critic_updates:2",
        "policy_kwargs:dict(lstm_hidden_size=8, net_arch=[8])",
        cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert EVALUATION_LINE.search(train.stdout) is not None, train.stdout[-3000:]
    run_folder = tmp_path / "logs" / "trpo_mask_lstm" / "InvalidActionsDiscrete-v0_1"
    model = MaskableRecurrentTRPO.load(run_folder / "InvalidActionsDiscrete-v0.zip")
    assert type(model) is MaskableRecurrentTRPO and model.policy.lstm_actor.hidden_size == 8
    assert len(np.load(run_folder / "evaluations.npz")["results"]) == 2
    enjoy = cli(
        "enjoy", "--algo", "trpo_mask_lstm", "--env", "InvalidActionsDiscrete-v0", "--no-render", "-n", "50",
        "--num-threads", "1", cwd=tmp_path,
    )  # fmt: skip
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]


def test_train_under_torchrun_is_one_data_parallel_job(tmp_path: Path) -> None:
    # 2 ranks: one run folder (rank 0's), rank 0 evaluates and saves, the model trained with data_parallel.
    # Pendulum-v1's entry with n_steps 256: 2 envs x 256 steps per rank, so 1024 steps of all ranks per rollout
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sb3_trpo",
        "train", "--env", "Pendulum-v1", "-n", "2048", "--seed", "0", "--final-eval-episodes", "2",
        "--num-threads", "1", "--eval-freq", "1024", "--eval-episodes", "1", "--save-freq", "1024",
        "-params", "n_steps:256", "n_critic_updates:2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(sb3_trpo.__file__).parent.parent)}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(EVALUATION_LINE.findall(result.stdout)) == 1, result.stdout[-3000:]
    run_folder = tmp_path / "logs" / "trpo" / "Pendulum-v1_1"
    assert sorted(path.name for path in (tmp_path / "logs" / "trpo").iterdir()) == ["Pendulum-v1_1"]
    # Every count is of all ranks' steps: the model, the logs, the checkpoints and the evaluations (every 1024 steps)
    model = TRPO.load(run_folder / "Pendulum-v1.zip")
    assert model.num_timesteps == 2048
    # (SB3's table after each rollout, and the evaluation's)
    assert sorted(set(re.findall(r"total_timesteps\s+\| (\d+)", result.stdout))) == ["1024", "2048"]
    assert sorted(path.name for path in run_folder.glob("rl_model_*_steps.zip")) == [
        "rl_model_1024_steps.zip",
        "rl_model_2048_steps.zip",
    ]
    assert TRPO.load(run_folder / "rl_model_1024_steps.zip").num_timesteps == 1024
    assert np.load(run_folder / "evaluations.npz")["timesteps"].tolist() == [1024, 2048]
    saved, _ = get_saved_hyperparams(str(run_folder / "Pendulum-v1"))
    assert "data_parallel" not in saved and saved["n_steps"] == 256  # the config file stays the Zoo entry's (and -params)


def test_enjoy_of_trpo_mask_predicts_under_the_env_masks(tmp_path: Path) -> None:
    from rl_zoo3.utils import ALGOS
    from sb3_contrib.common.maskable.utils import get_action_masks

    import rl_zoo3.enjoy
    from sb3_trpo.zoo import register
    from sb3_trpo.zoo.cli import _predict_under_masks, _zoo_script

    register()  # (registers the masked environments too)
    MaskableTRPO("MlpPolicy", "InvalidActionsDiscrete-v0", n_steps=64, batch_size=64, seed=0).save(tmp_path / "m.zip")
    with _zoo_script("enjoy", [], rl_zoo3.enjoy, **_predict_under_masks("trpo_mask")):
        env = rl_zoo3.enjoy.create_test_env("InvalidActionsDiscrete-v0", n_envs=1, should_render=False, hyperparams={})
        model = rl_zoo3.enjoy.ALGOS["trpo_mask"].load(tmp_path / "m.zip")
        obs = env.reset()
        for _ in range(30):
            masks = get_action_masks(env)
            action, _ = model.predict(obs)
            assert masks[0][int(action[0])]
            obs, *_ = env.step(action)
    assert ALGOS["trpo_mask"] is MaskableTRPO and rl_zoo3.enjoy.ALGOS is ALGOS


def test_enjoy_without_a_trained_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["enjoy", "--env", "CartPole-v1", "--no-render"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "cannot load a trained TRPO agent for CartPole-v1 from logs" in error


def test_missing_rl_zoo(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    # As if rl_zoo3 were not installed
    monkeypatch.setitem(sys.modules, "rl_zoo3", None)
    assert main(["train", "--env", "CartPole-v1"]) == EXIT_MISSING_DEPENDENCY
    error = capsys.readouterr().err.strip()
    assert error == (
        "sb3_trpo train: error: the RL Zoo workflow needs the optional package 'rl_zoo3'; "
        'install it with: pip install "sb3_trpo[extra]"'
    )


def test_missing_env_dependency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    # As if mujoco were not installed
    def make_without_mujoco(env_id: str, **kwargs: object) -> gym.Env:
        raise gym.error.DependencyNotInstalled('MuJoCo is not installed, run `pip install "gymnasium[mujoco]"`')

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gym, "make", make_without_mujoco)
    assert main(["train", "--env", "Hopper-v5", *FAST]) == EXIT_MISSING_DEPENDENCY
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "Hopper-v5 needs an optional dependency (MuJoCo is not installed" in error
    assert error.endswith('install it with: pip install "sb3_trpo[extra]"')
    assert not (tmp_path / "logs").exists()


def test_usage(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    assert "python -m sb3_trpo train --env CartPole-v1" in capsys.readouterr().out
    assert main(["fit"]) == EXIT_BAD_INPUT
    assert "unknown command 'fit'" in capsys.readouterr().err


# Imported by training, not to print the help
HEAVY_MODULES = ("torch", "stable_baselines3", "sb3_contrib", "rl_zoo3", "gymnasium", "optuna")


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["train", "--env", "Hopper-v5", "-h"]])
def test_help_imports_no_heavy_module(args: list[str], tmp_path: Path) -> None:
    # What the interpreter imports for the command itself (python -X importtime lists every module on stderr)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sb3_trpo", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: python -m sb3_trpo" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "sb3_trpo.zoo.cli" in imported
    assert not {module for module in imported if module.split(".")[0] in HEAVY_MODULES}


def _option_strings(help_text: str) -> set[str]:
    # The options of an argparse help: each line "  -x METAVAR, --long METAVAR   help"
    options = set()
    for line in help_text.splitlines():
        match = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if match is not None:
            options.update(part.split()[0] for part in match.group(1).split(", "))
    return options


def test_train_help_lists_our_choices_and_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--help"]) == 0
    help_text = capsys.readouterr().out
    options = _option_strings(help_text)
    # Our options in the list of options, each with its help
    assert {"--final-eval-episodes", "--trial-seeds", "--vec-env", "--algo", "-n", "-params"} <= options
    assert re.search(r"^  --final-eval-episodes FINAL_EVAL_EPISODES\n\s+episodes of the evaluation", help_text, re.M)
    # --algo lists the values the command takes, and no other (the Zoo's own lists a2c ... tqc, ppo_lstm)
    assert "  --algo {trpo,npg,trpo_mask,trpo_lstm,trpo_mask_lstm}\n" in help_text
    assert not re.search(r"\b(a2c|ddpg|dqn|ppo|sac|td3|ars|crossq|qrdqn|tqc|ppo_lstm)\b", help_text)
    assert "  --vec-env {dummy,subproc,envpool}\n" in help_text


def test_train_help_lists_the_installed_zoos_options(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # The Zoo's options are listed in sb3_trpo.zoo.cli (so that the help imports no Zoo): the installed Zoo's, no more
    import rl_zoo3.train

    monkeypatch.setattr(sys, "argv", ["train.py", "--help"])
    with pytest.raises(SystemExit):
        rl_zoo3.train.train()
    zoo_options = _option_strings(capsys.readouterr().out)
    assert main(["train", "--help"]) == 0
    our_options = _option_strings(capsys.readouterr().out)
    assert len(zoo_options) > 50 and zoo_options <= our_options
    assert our_options - zoo_options == {"--final-eval-episodes", "--trial-seeds"}


@pytest.mark.parametrize(("stop", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_saves_the_model_and_says_where(stop: signal.Signals, exit_code: int, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "sb3_trpo", "train", "--env", "CartPole-v1", "-n", "1000000", "--seed", "0", *FAST,
        "-params", "n_steps:64", "batch_size:64", "n_critic_updates:1",
    ]  # fmt: skip
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert process.stdout is not None
        try:
            # Training has started once SB3 logs its first rollout
            for line in process.stdout:
                if "total_timesteps" in line:
                    break
            assert process.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
            process.send_signal(stop)
            stdout, _ = process.communicate(timeout=120)
        finally:
            process.kill()
    assert process.returncode == exit_code, (tmp_path / "stderr.txt").read_text()[-3000:]
    path = Path("logs", "trpo", "CartPole-v1_1", "CartPole-v1.zip")
    message = (tmp_path / "stderr.txt").read_text().strip().splitlines()[-1]
    match = re.fullmatch(
        rf"sb3_trpo train: interrupted: training stopped by {stop.name} at step (\d+) of 1000000; the model is saved in "
        rf"{re.escape(str(path))} \(final evaluation skipped; train on from it with -i {re.escape(str(path))}\)",
        message,
    )
    assert match is not None, message
    # Saved as the Zoo saves after Ctrl-C, at the step where training stopped
    assert f"Saving to {path.parent}" in stdout and "Evaluation of the final model" not in stdout
    model = TRPO.load(tmp_path / path)
    assert 0 < model.num_timesteps == int(match.group(1)) < 1000000


def test_an_error_in_an_update_saves_the_model_as_before_that_update_then_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import sb3_trpo.trpo.trpo

    # The third update fails with its actor at a candidate step; each update's starting actor is recorded
    real_search, real_train = sb3_trpo.trpo.trpo.backtracking_line_search, TRPO.train
    starts: list[th.Tensor] = []

    def recording_train(self: TRPO) -> None:
        starts.append(get_flat_params(self.actor_params).clone())
        real_train(self)

    def failing_search(evaluate, *args, **kwargs):  # type: ignore[no-untyped-def]
        if len(starts) < 3:
            return real_search(evaluate, *args, **kwargs)
        evaluate(1.0)
        raise RuntimeError("a bad update")

    monkeypatch.setattr(TRPO, "train", recording_train)
    monkeypatch.setattr(sb3_trpo.trpo.trpo, "backtracking_line_search", failing_search)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="a bad update"):
        main([
            "train", "--env", "CartPole-v1", "-n", "100000", "--seed", "0", "--final-eval-episodes", "0", *FAST,
            "-params", "n_envs:1", "n_steps:64", "batch_size:64", "n_critic_updates:1",
        ])  # fmt: skip
    path = Path("logs", "trpo", "CartPole-v1_1", "CartPole-v1.zip")
    assert (
        f"Training failed at step 192 of 100000 (RuntimeError: a bad update); the model is saved in {path}, its policy "
        "as before the update that failed"
    ) in capsys.readouterr().err
    saved = TRPO.load(tmp_path / path)
    assert len(starts) == 3 and saved.num_timesteps == 192
    assert th.equal(get_flat_params(saved.actor_params), starts[-1])
    assert not th.equal(starts[-1], starts[0])  # two updates went through
