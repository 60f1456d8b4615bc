"""
Benchmark sb3_trpo's TRPO against sb3-contrib's TRPO and SB3's PPO on a grid of algorithm x environment x seed.

- The two TRPOs take the same hyperparameters: the environment's entry of ``zoo_configs/trpo.yml`` (or of the file
  given with ``--trpo-config``, e.g. the RL Zoo's own ``rl_zoo3/hyperparams/trpo.yml``).
- PPO takes the RL Zoo's ``hyperparams/ppo.yml`` entry for the environment. A MuJoCo ``-v5`` task without an entry
  of its own uses the ``-v4`` entry (for any of the files); the run's JSON records which entry was used.
- Every algorithm trains for the budget of the TRPO file's entry (``n_timesteps``), so that the three curves of an
  environment share their x axis; PPO's own Zoo budget is recorded as ``zoo_n_timesteps``.
- The Zoo's own code turns an entry into a model and environments (``ExperimentManager._preprocess_hyperparams`` for
  schedules such as ``lin_1e-3``, ``policy_kwargs`` strings, ``normalize``, ``env_wrapper``, ``frame_stack``, and
  ``ExperimentManager.create_envs`` for the vectorized, monitored, normalized environments).

Each run is one process pinned to one core (``taskset -c CORE``, one torch thread); ``--jobs N`` runs N of them at a
time on cores 0..N-1. A run appends one JSON line to ``OUT/<env>.jsonl`` when it ends; runs whose line is already
there are skipped, so an interrupted grid is resumed by running the same command again. The line is compact: its
per-update log goes to the git-ignored ``OUT/<env>.updates.jsonl.xz`` beside it (``scripts/records.py``).

Usage (classic control, the RL Zoo budgets, 3 seeds)::

    python scripts/benchmark.py --envs CartPole-v1 Pendulum-v1 Acrobot-v1 MountainCarContinuous-v0 \\
        LunarLander-v3 LunarLanderContinuous-v3 --seeds 0 1 2 --jobs 1
    python scripts/plot_results.py
"""

import argparse
import ast
import copy
import dataclasses
import functools
import importlib.metadata
import itertools
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# scripts/ on the path, for the sibling fingerprint.py and records.py (also when this file is imported from elsewhere)
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import records as record_logs  # the sibling script: compact records, the per-update logs in side files

ALGOS = (
    "sb3_trpo",
    "sb3_trpo_contrib_kl",
    "sb3_contrib",
    "ppo",
    "sb3_npg",
    "sb3_trpo_mask",
    "maskable_ppo",
    "sb3_trpo_mask_lstm",
    "sb3_trpo_lstm",
    "recurrent_ppo",
)
#: constructor options an algorithm name adds to its hyperparameter file's entry: ``sb3_trpo_contrib_kl`` is our TRPO
#: with sb3-contrib's trust region, to run sb3-contrib's hyperparameters like for like (not in the default --algos)
ALGORITHM_OPTIONS: dict[str, dict[str, Any]] = {"sb3_trpo_contrib_kl": {"kl_constraint": "sb3_contrib"}}
#: the algorithms that take action masks (trained and evaluated under the env's masks; not in the default --algos)
MASKABLE_ALGOS = ("sb3_trpo_mask", "maskable_ppo", "sb3_trpo_mask_lstm")
#: the algorithms with LSTM policies (not in the default --algos)
RECURRENT_ALGOS = ("sb3_trpo_lstm", "recurrent_ppo")
#: each algorithm of a family and the Args field of the file whose n_timesteps is the budget when only it runs
FAMILY_BUDGET_FILES = {
    **dict.fromkeys(MASKABLE_ALGOS, "trpo_mask_config"),
    **dict.fromkeys(RECURRENT_ALGOS, "trpo_lstm_config"),
}
#: Seeds for choosing configs and seeds for publishing: never mixed (docs/results.md, "Set-up")
TUNING_SEEDS = range(0, 100)
EVALUATION_SEEDS = range(100, 200)
#: Seeds that publish a tuned entry once, after the entry and the commands are committed; never used for a choice
CONFIRMATION_SEEDS = range(1000, 2000)
CLASSIC_CONTROL = (
    "CartPole-v1",
    "Pendulum-v1",
    "Acrobot-v1",
    "MountainCarContinuous-v0",
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
)
MUJOCO = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5")
REPO_ROOT = Path(__file__).resolve().parent.parent
# --trpo-config / --ppo-config value that stands for the RL Zoo's own hyperparams/trpo.yml / ppo.yml
RL_ZOO = "rl_zoo"
#: former ``# Tuned`` entries of zoo_configs/trpo.yml, each replaced by the robustness candidate chosen against it, by
#: generation (the RL Zoo's schema holds one entry per task, so a task's n-th replaced entry goes to
#: ``former_entries_<n>.yml``, its first to ``former_entries.yml``)
FORMER_ENTRIES = tuple(
    sorted(
        (REPO_ROOT / "benchmarks" / "configs").glob("former_entries*.yml"),
        key=lambda path: int(path.stem.rpartition("_")[2]) if path.stem[-1].isdigit() else 1,
    )
)


def former_entries() -> dict[str, list[dict[str, Any]]]:
    """
    :return: each task's former ``# Tuned`` entries (``FORMER_ENTRIES``), oldest first, as the files hold them
    """
    from sb3_trpo.zoo import load_config

    entries: dict[str, list[dict[str, Any]]] = {}
    for path in FORMER_ENTRIES:
        if path.is_file():
            for env_id, entry in load_config(path).items():
                entries.setdefault(env_id, []).append(entry)
    return entries


@dataclass
class Args:
    """Command-line arguments of the benchmark (each field's docstring is its ``--help`` text)."""

    envs: list[str] = field(default_factory=lambda: list(CLASSIC_CONTROL))
    """environment ids to run"""
    algos: list[str] = field(
        default_factory=lambda: [algo for algo in ALGOS if algo not in FAMILY_BUDGET_FILES and algo not in ALGORITHM_OPTIONS]
    )
    """algorithms to run, among sb3_trpo (ours), sb3_trpo_contrib_kl (ours with kl_constraint='sb3_contrib', sb3-contrib's
    trust region), sb3_contrib (sb3_contrib.TRPO), ppo (SB3's PPO), sb3_npg (our NPG,
    with the TRPO file's entry); for tasks with action masks sb3_trpo_mask (our MaskableTRPO), maskable_ppo
    (sb3-contrib's MaskablePPO) and sb3_trpo_mask_lstm (our MaskableRecurrentTRPO); for memory tasks sb3_trpo_lstm
    (our RecurrentTRPO) and recurrent_ppo (sb3-contrib's RecurrentPPO)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """random seeds"""
    trpo_config: str = str(REPO_ROOT / "zoo_configs" / "trpo.yml")
    """hyperparameter file (RL Zoo schema) of both TRPOs; rl_zoo: the RL Zoo's own hyperparams/trpo.yml"""
    ppo_config: str = RL_ZOO
    """hyperparameter file of PPO; rl_zoo: the RL Zoo's own hyperparams/ppo.yml"""
    trpo_mask_config: str = str(REPO_ROOT / "zoo_configs" / "trpo_mask.yml")
    """hyperparameter file of MaskableTRPO (and the budget when only maskable algorithms run)"""
    trpo_mask_lstm_config: str = str(REPO_ROOT / "zoo_configs" / "trpo_mask_lstm.yml")
    """hyperparameter file of MaskableRecurrentTRPO"""
    maskable_ppo_config: str = str(REPO_ROOT / "benchmarks" / "configs" / "maskable_ppo.yml")
    """hyperparameter file of MaskablePPO (the RL Zoo has none)"""
    trpo_lstm_config: str = str(REPO_ROOT / "zoo_configs" / "trpo_lstm.yml")
    """hyperparameter file of RecurrentTRPO (and the budget when only recurrent algorithms run)"""
    recurrent_ppo_config: str = RL_ZOO
    """hyperparameter file of RecurrentPPO; rl_zoo: the RL Zoo's own hyperparams/ppo_lstm.yml"""
    budget_scale: float = 1.0
    """multiply every budget (the TRPO file's n_timesteps) by this factor, for quick checks"""
    n_timesteps: int = 0
    """if > 0, the budget of every run (overrides the file and --budget-scale)"""
    n_evals: int = 20
    """evaluations along training (every budget / n_evals steps, plus one before training)"""
    eval_episodes: int = 10
    """episodes of each evaluation along training (deterministic actions)"""
    final_eval_episodes: int = 20
    """episodes of the final evaluation (deterministic actions)"""
    jobs: int = 1
    """runs at a time, each pinned to its own core (cores first_core..first_core+jobs-1)"""
    first_core: int = 0
    """first core to pin runs to (two grids can share a machine on disjoint cores)"""
    out: str = str(REPO_ROOT / "benchmarks" / "results")
    """folder of the results, one JSON-lines file per environment"""
    dry_run: bool = False
    """print the runs that would start, and start none"""


def parse_args(argv: list[str] | None = None) -> Args:
    """
    Build an argparse parser from the ``Args`` dataclass (field docstrings become the help) and parse ``argv``.

    :param argv: command-line arguments (``sys.argv[1:]`` when None)
    :return: the arguments
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    docs = _field_docs(Args)
    for arg_field in dataclasses.fields(Args):
        flag = "--" + arg_field.name.replace("_", "-")
        default = arg_field.default_factory() if arg_field.default_factory is not dataclasses.MISSING else arg_field.default
        help_text = f"{docs.get(arg_field.name, '')} (default: {default})"
        if arg_field.type == "bool" or isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=help_text)
        elif isinstance(default, list):
            item_type = int if arg_field.name == "seeds" else str
            parser.add_argument(flag, nargs="+", type=item_type, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)
    args = Args(**vars(parser.parse_args(argv)))
    unknown = sorted(set(args.algos) - set(ALGOS))
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; choose among {list(ALGOS)}")
    if args.jobs < 1 or args.n_evals < 1 or args.eval_episodes < 1 or args.final_eval_episodes < 1:
        parser.error("--jobs, --n-evals, --eval-episodes and --final-eval-episodes must be >= 1")
    return args


def _field_docs(cls: type) -> dict[str, str]:
    # The string literal right after a field is its documentation (as in CleanRL's Args); read from this file's source
    tree = ast.parse(Path(__file__).read_text())
    class_def = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls.__name__)
    docs = {}
    for node, following in itertools.pairwise(class_def.body):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = str(following.value.value)  # type: ignore[union-attr]
    return docs


# ---------------------------------------------------------------------------------------------------------------------
# Hyperparameters: pick an entry the way the Zoo does, with an explicit v5 -> v4 fallback
# ---------------------------------------------------------------------------------------------------------------------


def rl_zoo_config(algo: str) -> str:
    """
    :param algo: ``trpo`` or ``ppo``
    :return: path of the RL Zoo's own ``hyperparams/<algo>.yml`` (installed with rl_zoo3)
    """
    import rl_zoo3

    return str(Path(rl_zoo3.__file__).resolve().parent / "hyperparams" / f"{algo}.yml")


def config_path(value: str, algo: str) -> str:
    """
    :param value: a ``--trpo-config`` or ``--ppo-config`` value: a path, or ``rl_zoo``
    :param algo: ``trpo`` or ``ppo``
    :return: the hyperparameter file's path
    """
    return rl_zoo_config(algo) if value == RL_ZOO else value


def select_entry(config_path: str, env_id: str) -> tuple[str, dict[str, Any]]:
    """
    The entry of ``env_id`` in a Zoo hyperparameter file: its own key; else, for a ``-v5`` task, the ``-v4`` key
    (the Zoo's ppo.yml and trpo.yml have MuJoCo v4 entries only); else what the Zoo picks (``atari``, ``default``).

    :param config_path: the YAML file
    :param env_id: environment id
    :return: the key used and a deep copy of its entry
    """
    from sb3_trpo.zoo import load_config
    from sb3_trpo.zoo import select_entry as zoo_select_entry

    config = load_config(config_path)
    if env_id not in config and env_id.endswith("-v5") and env_id[:-1] + "4" in config:
        key = env_id[:-1] + "4"
        return key, copy.deepcopy(config[key])
    key, entry = zoo_select_entry(config, env_id, config_path)
    return key, copy.deepcopy(entry)


def algo_config(args: Args, algo: str) -> str:
    """
    :param args: the benchmark's arguments
    :param algo: one of ``ALGOS``
    :return: the hyperparameter file of ``algo``
    """
    files = {
        "ppo": config_path(args.ppo_config, "ppo"),
        "sb3_trpo_mask": args.trpo_mask_config,
        "maskable_ppo": args.maskable_ppo_config,
        "sb3_trpo_mask_lstm": args.trpo_mask_lstm_config,
        "sb3_trpo_lstm": args.trpo_lstm_config,
        "recurrent_ppo": config_path(args.recurrent_ppo_config, "ppo_lstm"),
    }
    return files.get(algo, config_path(args.trpo_config, "trpo"))


def run_budget(args: Args, env_id: str) -> int:
    """
    :param args: the benchmark's arguments
    :param env_id: environment id
    :return: the number of training steps of every algorithm on ``env_id``: the TRPO file's ``n_timesteps`` (the
        MaskableTRPO file's when only maskable algorithms run, MaskableRecurrentTRPO among them; the RecurrentTRPO file's when
        only recurrent ones do)
    """
    if args.n_timesteps > 0:
        return args.n_timesteps
    families = {FAMILY_BUDGET_FILES.get(algo, "trpo_config") for algo in args.algos}
    budget_file = getattr(args, families.pop()) if len(families) == 1 else args.trpo_config
    _, entry = select_entry(config_path(budget_file, "trpo"), env_id)
    return max(1, round(float(entry["n_timesteps"]) * args.budget_scale))


# ---------------------------------------------------------------------------------------------------------------------
# One run (in its own process)
# ---------------------------------------------------------------------------------------------------------------------


#: algorithm -> (module, class) it is imported from
ALGORITHM_CLASSES = {
    "sb3_trpo": ("sb3_trpo", "TRPO"),
    "sb3_trpo_contrib_kl": ("sb3_trpo", "TRPO"),
    "sb3_contrib": ("sb3_contrib", "TRPO"),
    "ppo": ("stable_baselines3", "PPO"),
    "sb3_npg": ("sb3_trpo", "NPG"),
    "sb3_trpo_mask": ("sb3_trpo", "MaskableTRPO"),
    "maskable_ppo": ("sb3_contrib", "MaskablePPO"),
    "sb3_trpo_mask_lstm": ("sb3_trpo", "MaskableRecurrentTRPO"),
    "sb3_trpo_lstm": ("sb3_trpo", "RecurrentTRPO"),
    "recurrent_ppo": ("sb3_contrib", "RecurrentPPO"),
}


def algorithm_class(algo: str) -> type:
    """
    :param algo: one of ``ALGOS``
    :return: the algorithm's class (imported on demand: a worker imports only its own)
    """
    module, name = ALGORITHM_CLASSES[algo]
    return getattr(importlib.import_module(module), name)


def versions() -> dict[str, str]:
    """
    :return: versions of python and of the packages that shape the results
    """
    found = {"python": platform.python_version()}
    packages = ("torch", "stable_baselines3", "sb3_contrib", "sb3_trpo", "rl_zoo3", "gymnasium", "mujoco", "box2d", "numpy")
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def cpu_model() -> str:
    """
    :return: the processor's model name (from /proc/cpuinfo on Linux), else the machine type
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def seed_role(seed: int) -> str:
    """
    :param seed: a run's seed
    :return: ``"tuning"`` (seeds 0-99: configs are chosen on them), ``"evaluation"`` (100-199: the development seeds,
        which steered which candidates were made) or ``"confirmation"`` (1000-1999: a tuned entry's one published run)
    """
    if seed in TUNING_SEEDS:
        return "tuning"
    if seed in EVALUATION_SEEDS:
        return "evaluation"
    if seed in CONFIRMATION_SEEDS:
        return "confirmation"
    raise ValueError(
        f"seed {seed} is neither a tuning seed (0-99), a development seed (100-199) nor a confirmation seed (1000-1999)"
    )


def git_state() -> dict[str, Any]:
    """
    :return: the repository's commit and whether the working tree differs from it (``dirty``), as the run saw them
    """

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "sb3_trpo", "scripts", "zoo_configs"))
    return {"git_commit": commit or "unknown", "git_dirty": dirty}


def _json_ready(value: Any) -> Any:
    # Hyperparameters as plain JSON: YAML scalars stay, anything else (classes, schedules) becomes its repr
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def _float(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def make_benchmark_callback(eval_env: Any, eval_freq: int, eval_episodes: int, maskable: bool = False) -> Any:
    """
    A callback that evaluates the model every ``eval_freq`` steps and records, per update, the mean training return
    (the Monitor's episodes in ``ep_info_buffer``) and the ``train/*`` values the algorithm logged for that update.

    :param eval_env: evaluation environment (a ``VecNormalize`` in it is synced from the training env before each evaluation)
    :param eval_freq: steps between evaluations
    :param eval_episodes: episodes per evaluation
    :param maskable: evaluate under the env's action masks (``evaluation_function(True)``)
    :return: the callback
    """
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import sync_envs_normalization

    evaluate_policy = evaluation_function(maskable)

    class BenchmarkCallback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.curve: list[dict[str, Any]] = []
            self.updates: list[dict[str, Any]] = []
            self.eval_seconds = 0.0
            self._next_eval = eval_freq
            self._pending: dict[str, Any] | None = None

        def evaluate(self) -> None:
            start = time.perf_counter()
            sync_envs_normalization(self.training_env, eval_env)
            returns, lengths = evaluate_policy(
                self.model, eval_env, n_eval_episodes=eval_episodes, deterministic=True, return_episode_rewards=True
            )
            self.curve.append(
                {
                    "timesteps": int(self.num_timesteps),
                    "mean": float(np.mean(returns)),
                    "std": float(np.std(returns)),
                    "mean_length": float(np.mean(lengths)),
                }
            )
            self.eval_seconds += time.perf_counter() - start

        def _on_training_start(self) -> None:
            self.evaluate()

        def _on_step(self) -> bool:
            if self.num_timesteps >= self._next_eval:
                self._next_eval += eval_freq
                self.evaluate()
            return True

        def _on_rollout_end(self) -> None:
            episode_returns = [info["r"] for info in self.model.ep_info_buffer or ()]
            self._pending = {
                "timesteps": int(self.num_timesteps),
                "ep_rew_mean": float(np.mean(episode_returns)) if episode_returns else None,
            }

        def _flush_update(self) -> None:
            # The values train() logged for the rollout that just ended (read before the next dump clears them)
            if self._pending is None:
                return
            for key, value in self.model.logger.name_to_value.items():
                if key.startswith("train/"):
                    self._pending[key[len("train/") :]] = _float(value)
            self.updates.append(self._pending)
            self._pending = None

        def _on_rollout_start(self) -> None:
            self._flush_update()

        def _on_training_end(self) -> None:
            self._flush_update()
            if not self.curve or self.curve[-1]["timesteps"] < self.num_timesteps:
                self.evaluate()

    return BenchmarkCallback()


def evaluation_function(maskable: bool) -> Any:
    """
    :param maskable: whether the model takes action masks
    :return: SB3's ``evaluate_policy``, or the maskable one of ``sb3_trpo.common.evaluation`` (sb3-contrib's arguments
        and results, actions under the env's masks, a recurrent policy's memory kept)
    """
    if maskable:
        from sb3_trpo.common.evaluation import evaluate_policy as evaluate_maskable_policy

        return evaluate_maskable_policy
    from stable_baselines3.common.evaluation import evaluate_policy

    return evaluate_policy


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """
    Train one algorithm on one environment with one seed, evaluating along the way, and return the run's record.

    :param spec: ``algo``, ``env``, ``seed``, ``budget``, ``config``, ``n_evals``, ``eval_episodes``, ``final_eval_episodes``
    :return: the JSON record of the run
    """
    import torch as th

    th.set_num_threads(1)
    import rl_zoo3.import_envs  # noqa: F401 (registers the Zoo's environments)
    from rl_zoo3.exp_manager import ExperimentManager
    from stable_baselines3.common.vec_env import sync_envs_normalization

    import sb3_trpo.envs  # noqa: F401 (registers the masked environments)

    algo, env_id, seed, budget = spec["algo"], spec["env"], spec["seed"], spec["budget"]
    maskable = algo in MASKABLE_ALGOS
    evaluate_policy = evaluation_function(maskable)
    git = git_state()
    config_key, entry = select_entry(spec["config"], env_id)
    raw_hyperparams = copy.deepcopy(entry)

    with tempfile.TemporaryDirectory() as log_folder:
        # The Zoo's experiment manager does the parsing: schedules, policy_kwargs, normalize, wrappers, frame stack
        manager = ExperimentManager(
            argparse.Namespace(),
            {"ppo": "ppo", "maskable_ppo": "ppo", "recurrent_ppo": "ppo_lstm"}.get(algo, "trpo"),
            env_id,
            log_folder,
            n_timesteps=budget,
            seed=seed,
            verbose=0,
            config=spec["config"],
        )
        entry.setdefault("n_timesteps", budget)
        hyperparams, env_wrapper, zoo_callbacks, vec_env_wrapper = manager._preprocess_hyperparams(copy.deepcopy(entry))
        manager.env_wrapper, manager.vec_env_wrapper = env_wrapper, vec_env_wrapper
        env = manager.create_envs(manager.n_envs, no_log=True)
        # A separate evaluation env, seeded apart from the training envs
        manager.seed = seed + 10_000
        eval_env = manager.create_envs(1, eval_env=True)
        manager.seed = seed

        hyperparams.update(ALGORITHM_OPTIONS.get(algo, {}))
        model = algorithm_class(algo)(env=env, seed=seed, verbose=0, device="cpu", **hyperparams)
        callback = make_benchmark_callback(eval_env, max(1, budget // spec["n_evals"]), spec["eval_episodes"], maskable)
        start = time.perf_counter()
        model.learn(total_timesteps=budget, callback=[callback, *zoo_callbacks])
        wall_clock = time.perf_counter() - start

        # Final evaluation on a fresh env with the final normalization statistics
        manager.seed = seed + 20_000
        final_env = manager.create_envs(1, eval_env=True)
        sync_envs_normalization(model.get_env(), final_env)
        final_returns, _ = evaluate_policy(
            model, final_env, n_eval_episodes=spec["final_eval_episodes"], deterministic=True, return_episode_rewards=True
        )
        assert isinstance(final_returns, list)  # return_episode_rewards=True: one return per episode
        for vec_env in (env, eval_env, final_env):
            vec_env.close()

    train_seconds = wall_clock - callback.eval_seconds
    # What this code computes (scripts/fingerprint.py), measured after the run so that it cannot touch the run's RNGs
    fingerprint = algorithm_fingerprint(algo)
    record = {
        "algo": algo,
        "env": env_id,
        "seed": seed,
        "seed_role": seed_role(seed),
        # the code this process imported: the commit, and whether sb3_trpo/, scripts/ or zoo_configs/ differed from it
        **git,
        "fingerprint": fingerprint,
        # what target_kl bounds (our algorithms only): "joint", or sb3-contrib's quantity ("sb3_contrib")
        "kl_constraint": getattr(model, "kl_constraint", None),
        "budget": budget,
        "timesteps": int(model.num_timesteps),
        "config_file": spec["config"],
        "config_key": config_key,
        # e.g. a MuJoCo v5 task run with the Zoo's v4 entry
        "config_note": "" if config_key == env_id else f"no {env_id} entry in {spec['config']}: used its {config_key} entry",
        "zoo_n_timesteps": _json_ready(raw_hyperparams.get("n_timesteps")),
        "hyperparams": _json_ready(raw_hyperparams),
        "model_kwargs": _json_ready(hyperparams),
        "n_envs": manager.n_envs,
        "normalize": bool(manager.normalize),
        "normalize_kwargs": _json_ready(manager.normalize_kwargs),
        "eval_episodes": spec["eval_episodes"],
        "learning_curve": callback.curve,
        "final_eval": {
            "episodes": len(final_returns),
            "mean": float(np.mean(final_returns)),
            "std": float(np.std(final_returns)),
            "returns": [float(value) for value in final_returns],
        },
        "wall_clock_s": wall_clock,
        "eval_s": callback.eval_seconds,
        "train_s": train_seconds,
        "steps_per_second": model.num_timesteps / train_seconds,
        "updates": callback.updates,
        "versions": versions(),
        "hardware": {
            "cpu": cpu_model(),
            "cpu_capability": th.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count(),
            "cores_pinned": sorted(os.sched_getaffinity(0)),
        },
        "torch_threads": th.get_num_threads(),
        "command": spec.get("command", ""),
        "worker_command": shlex.join([sys.executable, *sys.argv]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return record


def append_record(path: Path, record: dict[str, Any]) -> None:
    """
    Append one JSON line to ``path`` under an exclusive lock (several runs may end at once): the record compact, with
    its ``updates_summary`` in the place of its per-update log, which is appended to the git-ignored side file
    ``<env>.updates.jsonl.xz`` beside it (``scripts/records.py``).

    :param path: the environment's results file
    :param record: the run's record (with its ``updates``, or without a log)
    """
    record_logs.append_record(path, record)


# ---------------------------------------------------------------------------------------------------------------------
# The grid: skip finished runs, start the others on cores 0..jobs-1
# ---------------------------------------------------------------------------------------------------------------------


def results_path(out: str, env_id: str) -> Path:
    """
    :param out: results folder
    :param env_id: environment id
    :return: the JSON-lines file of ``env_id``
    """
    return Path(out) / f"{env_id}.jsonl"


def hyperparams_digest(hyperparams: dict[str, Any]) -> str:
    """
    :param hyperparams: a Zoo entry
    :return: 12 hex digits of the SHA-1 of the entry as canonical JSON (same values, same digest, in any file)
    """
    return record_logs.hyperparams_digest(_json_ready(hyperparams))


def run_key(algo: str, env_id: str, seed: int, budget: int, hyperparams: dict[str, Any]) -> tuple[str, str, int, int, str]:
    """
    :return: what identifies a run: algorithm, environment, seed, budget and the hyperparameters' digest (a run
        with the same values in another file counts as done; a changed entry runs again)
    """
    return (algo, env_id, seed, budget, hyperparams_digest(hyperparams))


@functools.cache
def algorithm_fingerprint(algo: str) -> list[float] | None:
    """
    :param algo: one of ``ALGOS``
    :return: the current code's fingerprint of our algorithms (scripts/fingerprint.py); None for sb3-contrib and PPO,
        whose records never go stale from our changes
    """
    import fingerprint

    return fingerprint.fingerprint(algo) if algo in fingerprint.ALGORITHMS else None


def is_stale(record: dict[str, Any], current: dict[str, list[float] | None]) -> bool:
    """
    :param record: a run's record
    :param current: the current code's fingerprint of each algorithm (None where there is none)
    :return: whether the record measured another version of our algorithm (a record made before fingerprints were
        recorded has none and is not judged here)
    """
    import fingerprint

    expected = current.get(record["algo"])
    recorded = record.get("fingerprint")
    return expected is not None and recorded is not None and not fingerprint.same_algorithm(recorded, expected)


def record_problems(records: list[dict[str, Any]], current: dict[str, list[float] | None]) -> list[str]:
    """
    What keeps a set of records from making one table: seed roles mixed (tuning and evaluation seeds never share a
    table), and stale records (measured by another version of our algorithm, :func:`is_stale`).

    :param records: the runs a table would be made of
    :param current: the current code's fingerprint of each algorithm
    :return: one line per problem (empty when the records may be reported together)
    """
    problems = []
    roles: dict[str, list[str]] = {}
    for record in records:
        role = record.get("seed_role") or (seed_role(record["seed"]) if record["seed"] < 200 else "unassigned")
        roles.setdefault(role, []).append(f"{record['algo']} {record['env']} seed {record['seed']}")
    if len(roles) > 1:
        problems.append("seed roles mixed: " + "; ".join(f"{role}: {len(runs)} runs" for role, runs in sorted(roles.items())))
    for record in records:
        if is_stale(record, current):
            problems.append(
                f"stale: {record['algo']} {record['env']} seed {record['seed']} (commit {record.get('git_commit', '?')[:7]})"
            )
    return problems


def refuse_to_report(records: list[dict[str, Any]], allow_mixed: bool) -> bool:
    """
    Check a table's records against the protocol with the current code's fingerprints (:func:`record_problems`),
    and say why when they may not be reported together.

    :param records: the runs a table would be made of
    :param allow_mixed: report them anyway (``--allow-mixed``)
    :return: whether the caller must refuse (the problems were printed to stderr)
    """
    current = {algo: algorithm_fingerprint(algo) for algo in sorted({record["algo"] for record in records})}
    problems = record_problems(records, current)
    if problems and not allow_mixed:
        print("refusing to report (pass --allow-mixed to report anyway):\n  " + "\n  ".join(problems), file=sys.stderr)
        return True
    return False


def finished_runs(
    out: str, env_id: str, current: dict[str, list[float] | None] | None = None
) -> set[tuple[str, str, int, int, str]]:
    """
    :param out: results folder
    :param env_id: environment id
    :param current: the current fingerprints; records they make stale do not count as finished (they run again)
    :return: the keys of the runs whose line is in the environment's results file
    """
    path = results_path(out, env_id)
    keys = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                if current is not None and is_stale(record, current):
                    print(
                        f"stale (fingerprint differs from the current code's): {record['algo']} {env_id} seed {record['seed']}"
                    )
                    continue
                keys.add(run_key(record["algo"], record["env"], record["seed"], record["budget"], record["hyperparams"]))
    return keys


def check_entry(algo: str, env_id: str, config: str, entry: dict[str, Any]) -> None:
    """
    Refuse, before any run starts, an entry that sb3-contrib's TRPO cannot take: one of sb3_trpo's own options
    (``ent_coef``, ``adaptive_kl``, ...) or a schedule for ``target_kl`` (``lin_0.02``; sb3-contrib's is a number).
    Both TRPOs read ``--trpo-config``, ours by default; sb3-contrib runs with the RL Zoo's settings
    (``--trpo-config rl_zoo``) in every published comparison.

    :param algo: one of ``ALGOS``
    :param env_id: environment id
    :param config: the hyperparameter file the entry comes from
    :param entry: the entry
    :raise ValueError: naming the entry's names that sb3-contrib's TRPO does not take
    """
    if algo != "sb3_contrib":
        return
    import inspect

    from sb3_trpo.zoo import ZOO_KEYS  # the names the Zoo consumes itself: they never reach the constructor

    accepted = set(inspect.signature(algorithm_class(algo).__init__).parameters) - {"self", "env"}
    refused = sorted(set(entry) - ZOO_KEYS - accepted)
    if isinstance(entry.get("target_kl"), str):
        refused.append(f"target_kl={entry['target_kl']!r} (a schedule)")
    if refused:
        raise ValueError(
            f"--algos sb3_contrib: the {env_id} entry of {config} sets {', '.join(refused)}, which sb3-contrib's TRPO "
            "does not take; run it with --trpo-config rl_zoo (the RL Zoo's settings) or a file without them"
        )


def plan_runs(args: Args) -> tuple[list[dict[str, Any]], int]:
    """
    :param args: the benchmark's arguments
    :return: the specs of the runs still to do (environment-major order) and the number of finished runs skipped
    """
    current = {algo: algorithm_fingerprint(algo) for algo in args.algos}
    pending, skipped = [], 0
    for env_id in args.envs:
        budget = run_budget(args, env_id)
        done = finished_runs(args.out, env_id, current)
        for seed in args.seeds:
            for algo in args.algos:
                config = algo_config(args, algo)
                entry = select_entry(config, env_id)[1]
                if run_key(algo, env_id, seed, budget, entry) in done:
                    skipped += 1
                    continue
                check_entry(algo, env_id, config, entry)
                pending.append(
                    {
                        "algo": algo,
                        "env": env_id,
                        "seed": seed,
                        "budget": budget,
                        "config": config,
                        "n_evals": args.n_evals,
                        "eval_episodes": args.eval_episodes,
                        "final_eval_episodes": args.final_eval_episodes,
                        "out": args.out,
                    }
                )
    return pending, skipped


def worker_command(spec: dict[str, Any], core: int) -> list[str]:
    """
    :param spec: a run's spec
    :param core: the core to pin the run to
    :return: the command that runs it (``taskset -c CORE`` when taskset is installed)
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    return command


def run_grid(args: Args, command: str) -> int:
    """
    Run the pending runs, ``args.jobs`` at a time, each in its own process on its own core.

    :param args: the benchmark's arguments
    :param command: the benchmark's command line, recorded in every run
    :return: the number of failed runs
    """
    pending, skipped = plan_runs(args)
    print(f"{len(pending)} runs to do, {skipped} finished runs skipped (results in {args.out})", flush=True)
    return execute_runs(pending, args.jobs, args.first_core, command, args.dry_run)


def execute_runs(pending: list[dict[str, Any]], jobs: int, first_core: int, command: str, dry_run: bool = False) -> int:
    """
    Run specs ``jobs`` at a time, each in its own process pinned to its own core (``first_core`` on).

    :param pending: the runs' specs (:func:`plan_runs`)
    :param jobs: runs at a time
    :param first_core: first core to pin runs to
    :param command: the command line that asked for the runs, recorded in every run
    :param dry_run: only list the runs
    :return: the number of failed runs
    """
    pending = list(pending)
    if dry_run:
        for spec in pending:
            print(f"  {spec['algo']:12s} {spec['env']:28s} seed {spec['seed']}  {spec['budget']} steps  {spec['config']}")
        return 0
    # The repository first on the path (the workers import scripts' helpers and sb3_trpo), the caller's path kept
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": python_path}
    running: dict[int, tuple[subprocess.Popen, dict[str, Any], float]] = {}
    free_cores = list(range(first_core, first_core + jobs))
    failures = 0
    while pending or running:
        while pending and free_cores:
            spec = {**pending.pop(0), "command": command}
            core = free_cores.pop(0)
            running[core] = (subprocess.Popen(worker_command(spec, core), env=env), spec, time.time())
            what = f"{spec['algo']} {spec['env']} seed {spec['seed']} ({spec['budget']} steps)"
            print(f"[start] {what} on core {core}", flush=True)
        time.sleep(0.2)
        for core, (process, spec, started) in list(running.items()):
            if process.poll() is None:
                continue
            del running[core]
            free_cores.append(core)
            status = "done" if process.returncode == 0 else f"FAILED (exit code {process.returncode})"
            failures += process.returncode != 0
            print(f"[{status}] {spec['algo']} {spec['env']} seed {spec['seed']} in {time.time() - started:.0f} s", flush=True)
    return failures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        spec = json.loads(argv[1])
        record = run_one(spec)
        append_record(results_path(spec["out"], spec["env"]), record)
        final = record["final_eval"]
        print(
            f"{spec['algo']} {spec['env']} seed {spec['seed']}: final return {final['mean']:.1f} +/- {final['std']:.1f}, "
            f"{record['steps_per_second']:.0f} steps/s",
            flush=True,
        )
        return 0
    args = parse_args(argv)
    command = shlex.join(["python", "scripts/benchmark.py", *argv])
    try:
        failed = run_grid(args, command)
    except ValueError as error:  # an entry an algorithm cannot take (check_entry): nothing has run
        print(f"benchmark.py: error: {error}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
