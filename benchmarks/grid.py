"""
The grid (``python -m benchmarks run``): algorithms x environments x seeds, one record per run.

- Each algorithm takes the environment's entry of its own hyperparameter file (:mod:`benchmarks.algorithms`): both
  TRPOs and NPG the one of ``zoo_configs/trpo.yml`` (or of the file given with ``--trpo-config``, e.g. the RL Zoo's
  own ``rl_zoo3/hyperparams/trpo.yml``), PPO the RL Zoo's ``hyperparams/ppo.yml`` entry. A MuJoCo ``-v5`` task
  without an entry of its own uses the ``-v4`` entry (for any of the files); the record says which entry was used.
- Every algorithm trains for the budget of the TRPO file's entry (``n_timesteps``), so that the curves of an
  environment share their x axis; PPO's own Zoo budget is recorded as ``zoo_n_timesteps``.
- The Zoo's own code turns an entry into a model and environments (``ExperimentManager._preprocess_hyperparams`` for
  schedules such as ``lin_1e-3``, ``policy_kwargs`` strings, ``normalize``, ``env_wrapper``, ``frame_stack``, and
  ``ExperimentManager.create_envs`` for the vectorized, monitored, normalized environments).

Each run is one process pinned to one core (``taskset -c CORE``, one torch thread); ``--jobs N`` runs N of them at a
time on cores 0..N-1. A run appends one JSON line to ``OUT/<env>.jsonl`` when it ends; runs whose line is already
there are skipped, so an interrupted grid is resumed by running the same command again. The line is compact: its
per-update log goes to the git-ignored ``OUT/<env>.updates.jsonl.xz`` beside it (:mod:`benchmarks.records`).

Usage (classic control, the RL Zoo budgets, 3 seeds)::

    python -m benchmarks run --envs CartPole-v1 Pendulum-v1 Acrobot-v1 MountainCarContinuous-v0 \\
        LunarLander-v3 LunarLanderContinuous-v3 --seeds 0 1 2 --jobs 1
    python -m benchmarks plot
"""

import argparse
import ast
import copy
import dataclasses
import itertools
import json
import os
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

from benchmarks import REPO_ROOT
from benchmarks.algorithms import ALGORITHMS, RL_ZOO_FILES
from benchmarks.entries import RL_ZOO, config_path, select_entry
from benchmarks.fingerprint import algorithm_fingerprint, is_stale
from benchmarks.records import append_record, git_state, json_ready, provenance, read, record_key, results_path, run_key

CLASSIC_CONTROL = (
    "CartPole-v1",
    "Pendulum-v1",
    "Acrobot-v1",
    "MountainCarContinuous-v0",
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
)
MUJOCO = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5")


@dataclass
class Args:
    """The options of ``run`` (each field's docstring is its ``--help`` text)."""

    envs: list[str] = field(default_factory=lambda: list(CLASSIC_CONTROL))
    """environment ids to run"""
    algos: list[str] = field(default_factory=lambda: [name for name, algorithm in ALGORITHMS.items() if algorithm.default])
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``run``, from the ``Args`` dataclass (field docstrings become the help)."""
    parser.formatter_class = argparse.RawTextHelpFormatter
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
    # a worker: one run, its spec as JSON (the grid starts them)
    parser.add_argument("--worker", default=None, metavar="SPEC", help=argparse.SUPPRESS)


def parse_args(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> Args:
    """
    :param argv: the options of ``run`` (``sys.argv[1:]`` when None)
    :param parser: the parser to report errors with (``add_arguments``'s; a new one when None)
    :return: the options, checked
    """
    if parser is None:
        parser = argparse.ArgumentParser(prog="python -m benchmarks run")
        add_arguments(parser)
    return _checked(parser, vars(parser.parse_args(argv)))


def _checked(parser: argparse.ArgumentParser, options: dict[str, Any]) -> Args:
    args = Args(**{name: value for name, value in options.items() if name in {f.name for f in dataclasses.fields(Args)}})
    unknown = sorted(set(args.algos) - set(ALGORITHMS))
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; choose among {list(ALGORITHMS)}")
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


def algo_config(args: Args, algo: str) -> str:
    """:return: the hyperparameter file of ``algo``"""
    option = ALGORITHMS[algo].config
    return config_path(getattr(args, option), RL_ZOO_FILES.get(option, "trpo"))


def run_budget(args: Args, env_id: str) -> int:
    """
    :return: the number of training steps of every algorithm on ``env_id``: the TRPO file's ``n_timesteps`` (the
        MaskableTRPO file's when only maskable algorithms run, MaskableRecurrentTRPO among them; the RecurrentTRPO file's
        when only recurrent ones do)
    """
    if args.n_timesteps > 0:
        return args.n_timesteps
    families = {ALGORITHMS[algo].budget_config for algo in args.algos}
    budget_file = getattr(args, families.pop()) if len(families) == 1 else args.trpo_config
    _, entry = select_entry(config_path(budget_file, "trpo"), env_id)
    return max(1, round(float(entry["n_timesteps"]) * args.budget_scale))


def _float(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def make_callback(eval_env: Any, eval_freq: int, eval_episodes: int, maskable: bool = False) -> Any:
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

    class RecordCallback(BaseCallback):
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

    return RecordCallback()


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


def final_evaluation(model: Any, final_env: Any, episodes: int, maskable: bool = False) -> dict[str, Any]:
    """
    The final evaluation of a run: deterministic, on a fresh env (seeded apart) with the final normalization statistics.

    :return: the record's ``final_eval``: ``episodes``, ``mean``, ``std`` and the ``returns``
    """
    from stable_baselines3.common.vec_env import sync_envs_normalization

    sync_envs_normalization(model.get_env(), final_env)
    returns, _ = evaluation_function(maskable)(
        model, final_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
    )
    assert isinstance(returns, list)  # return_episode_rewards=True: one return per episode
    return {
        "episodes": len(returns),
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "returns": [float(value) for value in returns],
    }


def zoo_setup(
    algo: str, env_id: str, config: str, entry: dict[str, Any], seed: int, folder: str, budget: int = 0
) -> tuple[Any, dict[str, Any], list[Any]]:
    """
    The RL Zoo's own parsing of an entry (schedules, ``policy_kwargs``, ``normalize``, wrappers, frame stack).

    :param entry: ``algo``'s entry of ``env_id`` in ``config`` (not changed)
    :param folder: a scratch log folder for the Zoo's experiment manager
    :param budget: the training steps (0: the entry's ``n_timesteps``)
    :return: the Zoo's experiment manager, ready to create the envs; the model's keyword arguments; the Zoo's callbacks
    """
    from rl_zoo3.exp_manager import ExperimentManager

    zoo_algo = ALGORITHMS[algo].zoo_algo
    manager = ExperimentManager(
        argparse.Namespace(), zoo_algo, env_id, folder, n_timesteps=budget, seed=seed, verbose=0, config=config
    )
    hyperparams, manager.env_wrapper, callbacks, manager.vec_env_wrapper = manager._preprocess_hyperparams(
        {"n_timesteps": budget or 1, **copy.deepcopy(entry)}
    )
    return manager, hyperparams, callbacks


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """
    Train one algorithm on one environment with one seed, evaluating along the way, and return the run's record.

    :param spec: ``algo``, ``env``, ``seed``, ``budget``, ``config``, ``n_evals``, ``eval_episodes``, ``final_eval_episodes``
    :return: the JSON record of the run
    """
    import torch as th

    th.set_num_threads(1)
    import rl_zoo3.import_envs  # noqa: F401 (registers the Zoo's environments)

    import sb3_trpo.envs  # noqa: F401 (registers the masked environments)

    algo, env_id, seed, budget = spec["algo"], spec["env"], spec["seed"], spec["budget"]
    algorithm = ALGORITHMS[algo]
    git = git_state()  # the code this process imported
    config_key, entry = select_entry(spec["config"], env_id)
    raw_hyperparams = copy.deepcopy(entry)

    with tempfile.TemporaryDirectory() as log_folder:
        manager, hyperparams, zoo_callbacks = zoo_setup(algo, env_id, spec["config"], entry, seed, log_folder, budget)
        env = manager.create_envs(manager.n_envs, no_log=True)
        # A separate evaluation env, seeded apart from the training envs
        manager.seed = seed + 10_000
        eval_env = manager.create_envs(1, eval_env=True)
        manager.seed = seed

        hyperparams.update(algorithm.options)
        model = algorithm.load()(env=env, seed=seed, verbose=0, device="cpu", **hyperparams)
        callback = make_callback(eval_env, max(1, budget // spec["n_evals"]), spec["eval_episodes"], algorithm.maskable)
        start = time.perf_counter()
        model.learn(total_timesteps=budget, callback=[callback, *zoo_callbacks])
        wall_clock = time.perf_counter() - start

        # Final evaluation on a fresh env with the final normalization statistics
        manager.seed = seed + 20_000
        final_env = manager.create_envs(1, eval_env=True)
        final_eval = final_evaluation(model, final_env, spec["final_eval_episodes"], algorithm.maskable)
        for vec_env in (env, eval_env, final_env):
            vec_env.close()

    train_seconds = wall_clock - callback.eval_seconds
    return {
        "algo": algo,
        "env": env_id,
        "seed": seed,
        # what target_kl bounds (our algorithms only): "joint", or sb3-contrib's quantity ("sb3_contrib")
        "kl_constraint": getattr(model, "kl_constraint", None),
        "budget": budget,
        "timesteps": int(model.num_timesteps),
        "config_file": spec["config"],
        "config_key": config_key,
        # e.g. a MuJoCo v5 task run with the Zoo's v4 entry
        "config_note": "" if config_key == env_id else f"no {env_id} entry in {spec['config']}: used its {config_key} entry",
        "zoo_n_timesteps": json_ready(raw_hyperparams.get("n_timesteps")),
        "hyperparams": json_ready(raw_hyperparams),
        "model_kwargs": json_ready(hyperparams),
        "n_envs": manager.n_envs,
        "normalize": bool(manager.normalize),
        "normalize_kwargs": json_ready(manager.normalize_kwargs),
        "eval_episodes": spec["eval_episodes"],
        "learning_curve": callback.curve,
        "final_eval": final_eval,
        "wall_clock_s": wall_clock,
        "eval_s": callback.eval_seconds,
        "train_s": train_seconds,
        "steps_per_second": model.num_timesteps / train_seconds,
        "updates": callback.updates,
        "torch_threads": th.get_num_threads(),
        "worker_command": shlex.join([sys.executable, *sys.argv]),
        # the seed's role, the commit, the versions, the machine; the fingerprint of what this code computes, measured
        # after the run so that it cannot touch the run's RNGs
        **provenance(seed, git, algorithm_fingerprint(algo), spec.get("command", "")),
    }


def finished_runs(
    out: str, env_id: str, current: dict[str, list[float] | None] | None = None
) -> set[tuple[str, str, int, int, str]]:
    """
    :param current: the current fingerprints; records they make stale do not count as finished (they run again)
    :return: the keys of the runs whose line is in the environment's results file
    """
    keys = set()
    for record in read(results_path(out, env_id)):
        if current is not None and is_stale(record, current):
            print(f"stale (fingerprint differs from the current code's): {record['algo']} {env_id} seed {record['seed']}")
            continue
        keys.add(record_key(record))
    return keys


def check_entry(algo: str, env_id: str, config: str, entry: dict[str, Any]) -> None:
    """
    Refuse, before any run starts, an entry that sb3-contrib's TRPO cannot take: one of sb3_trpo's own options
    (``ent_coef``, ``adaptive_kl``, ...) or a schedule for ``target_kl`` (``lin_0.02``; sb3-contrib's is a number).
    Both TRPOs read ``--trpo-config``, ours by default; sb3-contrib runs with the RL Zoo's settings
    (``--trpo-config rl_zoo``) in every published comparison.

    :param config: the hyperparameter file the entry comes from
    :raise ValueError: naming the entry's names that sb3-contrib's TRPO does not take
    """
    if algo != "sb3_contrib":
        return
    import inspect

    from sb3_trpo.zoo import ZOO_KEYS  # the names the Zoo consumes itself: they never reach the constructor

    accepted = set(inspect.signature(ALGORITHMS[algo].load()).parameters) - {"env"}
    refused = sorted(set(entry) - ZOO_KEYS - accepted)
    if isinstance(entry.get("target_kl"), str):
        refused.append(f"target_kl={entry['target_kl']!r} (a schedule)")
    if refused:
        raise ValueError(
            f"--algos sb3_contrib: the {env_id} entry of {config} sets {', '.join(refused)}, which sb3-contrib's TRPO "
            "does not take; run it with --trpo-config rl_zoo (the RL Zoo's settings) or a file without them"
        )


def plan_runs(args: Args) -> tuple[list[dict[str, Any]], int]:
    """:return: the specs of the runs still to do (environment-major order) and the number of finished runs skipped"""
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
    """:return: the command that runs it (``taskset -c CORE`` when taskset is installed)"""
    command = [sys.executable, "-m", "benchmarks", "run", "--worker", json.dumps(spec)]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    return command


def run_grid(args: Args, command: str) -> int:
    """
    Run the pending runs, ``args.jobs`` at a time, each in its own process on its own core.

    :param command: the command line, recorded in every run
    :return: the number of failed runs
    """
    pending, skipped = plan_runs(args)
    print(f"{len(pending)} runs to do, {skipped} finished runs skipped (results in {args.out})", flush=True)
    return execute_runs(pending, args.jobs, args.first_core, command, args.dry_run)


def execute_runs(pending: list[dict[str, Any]], jobs: int, first_core: int, command: str, dry_run: bool = False) -> int:
    """
    Run specs ``jobs`` at a time, each in its own process pinned to its own core (``first_core`` on).

    :param pending: the runs' specs (:func:`plan_runs`)
    :param command: the command line that asked for the runs, recorded in every run
    :return: the number of failed runs
    """
    pending = list(pending)
    if dry_run:
        for spec in pending:
            print(f"  {spec['algo']:12s} {spec['env']:28s} seed {spec['seed']}  {spec['budget']} steps  {spec['config']}")
        return 0
    # The repository first on the path (the workers import the harness and sb3_trpo), the caller's path kept
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


def main(args: argparse.Namespace) -> int:
    if args.worker is not None:
        spec = json.loads(args.worker)
        record = run_one(spec)
        append_record(results_path(spec["out"], spec["env"]), record)
        final = record["final_eval"]
        print(
            f"{spec['algo']} {spec['env']} seed {spec['seed']}: final return {final['mean']:.1f} +/- {final['std']:.1f}, "
            f"{record['steps_per_second']:.0f} steps/s",
            flush=True,
        )
        return 0
    options = _checked(args.parser, vars(args))
    try:
        failed = run_grid(options, args.command_line)
    except ValueError as error:  # an entry an algorithm cannot take (check_entry): nothing has run
        print(f"python -m benchmarks run: error: {error}", file=sys.stderr)
        return 2
    return 1 if failed else 0
