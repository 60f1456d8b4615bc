"""
Steps per second of ``learn()``: ours against the environment alone, sb3-contrib's TRPO and SB3's PPO, side by side
(``python -m benchmarks bench learn``).

For each task, in one process on one core (run it under ``taskset -c CORE``; torch on one thread), interleaved over
``--repeats`` rounds, median of the rounds:

- env alone: the same vectorized stack as training (the RL Zoo's: ``DummyVecEnv`` of ``Monitor``-wrapped envs, then
  ``VecNormalize``), stepped with pre-drawn random actions: the floor no ``learn()`` can beat;
- ours: ``sb3_trpo.TRPO.learn()`` with the Zoo's TRPO entry (``zoo_configs/trpo.yml`` keeps its values);
- ours, SB3's loop: the same, with the collection through SB3's ``collect_rollouts`` (the NumPy fast path off), to
  show what the fast path buys;
- sb3-contrib: ``sb3_contrib.TRPO.learn()``, same entry;
- PPO: SB3's ``PPO.learn()`` with the Zoo's own ``ppo.yml`` entry for the task.

Every model is built by the RL Zoo's ``ExperimentManager`` from its entry (as ``run`` does), and
learns ``--steps`` steps after a warm-up of one rollout. Writes a text table and a JSON file::

    taskset -c 1 python -m benchmarks bench learn --envs HalfCheetah-v5 Hopper-v5 --steps 40960 --repeats 3 \\
        --json benchmarks/bench_learn.json --text benchmarks/bench_learn.txt

With ``--evaluate EPISODES``, it times instead SB3's ``evaluate_policy`` (deterministic, the Zoo's evaluation env:
one ``Monitor``-wrapped env under a frozen ``VecNormalize``) of one model with our ``predict`` against SB3's own
``predict`` (``BaseAlgorithm.predict``, the same actions), interleaved, and ``predict`` alone per call::

    taskset -c 1 python -m benchmarks bench learn --envs HalfCheetah-v5 Walker2d-v5 --evaluate 5 --repeats 3 \\
        --json benchmarks/bench_predict.json --text benchmarks/bench_predict.txt
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from benchmarks import REPO_ROOT
from benchmarks.algorithms import ALGORITHMS
from benchmarks.bench import timed
from benchmarks.entries import rl_zoo_config, select_entry
from benchmarks.grid import zoo_setup
from benchmarks.records import cpu_model, git_state, hardware, versions

VARIANTS = ("env_alone", "ours", "ours_sb3_loop", "ours_contrib_settings", "sb3_contrib", "ppo")
#: The hyperparameter file of each algorithm that does not run ours (``zoo_configs/trpo.yml``): the RL Zoo's own
#: (ours like for like: sb3-contrib's entries with ``kl_constraint="sb3_contrib"``)
ZOO_FILES = {"ppo": "ppo", "sb3_contrib": "trpo", "sb3_trpo_contrib_kl": "trpo"}


def build(algo: str, env_id: str, seed: int, folder: str) -> tuple[Any, Any, Any]:
    """
    A model and its training env, from the RL Zoo's entry, as ``run`` builds them.

    :param algo: ``sb3_trpo``, ``sb3_trpo_contrib_kl``, ``sb3_contrib`` or ``ppo``
    :param folder: a scratch log folder for the Zoo's experiment manager
    :return: the model, the vectorized env and the Zoo's experiment manager that made it
    """
    config = rl_zoo_config(ZOO_FILES[algo]) if algo in ZOO_FILES else str(REPO_ROOT / "zoo_configs" / "trpo.yml")
    manager, hyperparams, _ = zoo_setup(algo, env_id, config, select_entry(config, env_id)[1], seed, folder)
    env = manager.create_envs(manager.n_envs, no_log=True)
    hyperparams.update(ALGORITHMS[algo].options)
    model = ALGORITHMS[algo].load()(env=env, seed=seed, verbose=0, device="cpu", **hyperparams)
    return model, env, manager


def env_alone_rate(env: Any, steps: int, seed: int) -> float:
    """:return: steps per second of the vectorized env alone, with random actions drawn before the clock starts"""
    n_envs = env.num_envs
    generator = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    actions = generator.uniform(low, high, size=(steps // n_envs + 1, n_envs, *env.action_space.shape)).astype(np.float32)
    env.reset()
    start = time.perf_counter()
    for index in range(steps // n_envs):
        env.step(actions[index])
    return (steps // n_envs) * n_envs / (time.perf_counter() - start)


def learn_rate(model: Any, steps: int) -> tuple[float, float]:
    """:return: steps per second of ``model.learn(steps)`` (after a one-rollout warm-up), and the share of it in ``train()``"""
    model.learn(model.n_steps * model.n_envs)
    totals = {"train": 0.0}
    model.train = timed(totals, "train", model.train)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    return steps / elapsed, totals["train"] / elapsed


def measure(variant: str, env_id: str, steps: int, seed: int) -> tuple[float, float | None]:
    """
    :return: one measurement of ``variant`` on ``env_id``: steps per second, and the share of ``train()`` (None for
        the env alone)
    """
    import sb3_trpo.common.on_policy_ng as core

    ours = {
        "env_alone": "sb3_trpo",
        "ours": "sb3_trpo",
        "ours_sb3_loop": "sb3_trpo",
        "ours_contrib_settings": "sb3_trpo_contrib_kl",
    }
    algo = ours.get(variant, variant)
    real_bind: Callable[..., Any] = core.bind_numpy_forward
    if variant == "ours_sb3_loop":
        core.bind_numpy_forward = lambda policy: None
    try:
        with tempfile.TemporaryDirectory() as folder:
            model, env, _ = build(algo, env_id, seed, folder)
            if variant == "env_alone":
                rate, train_share = env_alone_rate(env, steps, seed), None
            else:
                rate, train_share = learn_rate(model, steps)
            env.close()
    finally:
        core.bind_numpy_forward = real_bind
    return rate, train_share


def write_outputs(args: argparse.Namespace, text: str, record: dict[str, Any]) -> None:
    """
    Print the table, and write it to ``--text`` and the record to ``--json``, with the command that made it, the code
    measured (what this process imported: the tree may change while it runs), the versions and the machine.
    """
    print(text)
    if args.text:
        Path(args.text).write_text(text + "\n")
    if args.json:
        record = {"command": args.command_line, **record, "versions": versions(), "hardware": hardware(), **args.git}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


def _machine_line() -> str:
    return f"torch threads 1, cores {sorted(os.sched_getaffinity(0))} ({cpu_model()}, {th.backends.cpu.get_cpu_capability()})"


def collection_parts(env_id: str, seed: int, calls: int) -> dict[str, float]:
    """
    Microseconds per call of the pieces every step of our rollout pays beyond ``env.step``, each timed alone over
    ``calls`` calls on the model of the Zoo's entry (one call serves all of a vectorized step's envs):

    - ``numpy_forward``: the NumPy forward (actor and critic, the Gaussian's draw and log-prob) of
      :func:`sb3_trpo.common.rollout.bind_numpy_forward`;
    - ``torch_randn``: the one ``torch.randn`` of the actions' shape inside it (SB3's draw, which the buffer reproduces);
    - ``callbacks``: ``update_locals`` and ``on_step`` of the callbacks ``learn()`` installs when the user passes none.

    :return: microseconds per call of each piece, and ``n_envs``
    """
    from sb3_trpo.common.rollout import bind_numpy_forward

    with tempfile.TemporaryDirectory() as folder:
        model, env, _ = build("sb3_trpo", env_id, seed, folder)
        bound = bind_numpy_forward(model.policy)
        assert bound is not None, f"{env_id}: the NumPy forward does not apply"
        forward = bound[0]
        obs = env.reset()
        _, callback = model._setup_learn(model.n_steps * model.n_envs, None)
        callback.init_callback(model)
        new_obs, rewards = obs, np.zeros(env.num_envs, dtype=np.float32)
        n_steps = 0
        action_shape = (env.num_envs, *env.action_space.shape)

        def callbacks() -> None:
            callback.update_locals({"new_obs": new_obs, "rewards": rewards, "n_steps": n_steps})
            callback.on_step()

        pieces: dict[str, Callable[[], Any]] = {
            "numpy_forward": lambda: forward(obs),
            "torch_randn": lambda: th.randn(action_shape).numpy(),
            "callbacks": callbacks,
        }
        parts = {"n_envs": float(env.num_envs)}
        for name, piece in pieces.items():
            piece()  # warm-up
            start = time.perf_counter()
            for _ in range(calls):
                piece()
            parts[name] = (time.perf_counter() - start) / calls * 1e6
        env.close()
    return parts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench learn``."""
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=40_960)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--text", default=None, help="write the table here")
    parser.add_argument(
        "--evaluate",
        type=int,
        default=0,
        help="if > 0, time instead evaluate_policy over this many episodes with our predict and SB3's (evaluation_rates)",
    )
    parser.add_argument(
        "--parts",
        type=int,
        default=0,
        help="if > 0, time instead the pieces of our collection beyond env.step (collection_parts), over this many calls",
    )


def main(args: argparse.Namespace) -> int:
    th.set_num_threads(1)
    args.git = git_state()  # the code measured: what this process imports now (the tree may change while it runs)
    if args.parts > 0:
        return report_parts(args)
    if args.evaluate > 0:
        return report_evaluation(args)

    rates: dict[str, dict[str, list[float]]] = {env_id: {variant: [] for variant in args.variants} for env_id in args.envs}
    train_shares: dict[str, dict[str, list[float]]] = {env_id: {} for env_id in args.envs}
    for round_index in range(args.repeats):
        for env_id in args.envs:
            for variant in args.variants:
                rate, share = measure(variant, env_id, args.steps, args.seed + round_index)
                rates[env_id][variant].append(rate)
                if share is not None:
                    train_shares[env_id].setdefault(variant, []).append(share)
                print(f"round {round_index + 1}: {env_id} {variant}: {rate:.0f} steps/s", flush=True)

    median = {env_id: {variant: statistics.median(values) for variant, values in by.items()} for env_id, by in rates.items()}
    lines = [
        f"learn() steps/s, median of {args.repeats} interleaved rounds of {args.steps} steps, one process, {_machine_line()}",
        "",
        "| env | "
        + " | ".join(args.variants)
        + " | ours / env alone | ours / sb3-contrib | ours / PPO | ours / ours with SB3's loop "
        "| ours with sb3-contrib's settings / sb3-contrib | train() share of ours |",
        "|---" * (len(args.variants) + 7) + "|",
    ]

    def ratio(env_id: str, numerator: str, denominator: str) -> str:
        values = median[env_id]
        return f"{values[numerator] / values[denominator]:.2f}" if numerator in values and denominator in values else "-"

    for env_id in args.envs:
        cells = [f"{median[env_id][variant]:.0f}" for variant in args.variants]
        cells += [ratio(env_id, "ours", other) for other in ("env_alone", "sb3_contrib", "ppo", "ours_sb3_loop")]
        cells.append(ratio(env_id, "ours_contrib_settings", "sb3_contrib"))
        shares = train_shares[env_id].get("ours")
        cells.append(f"{statistics.median(shares):.2f}" if shares else "-")
        lines.append(f"| {env_id} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    record = {
        "steps": args.steps,
        "repeats": args.repeats,
        "median_steps_per_s": median,
        "all_steps_per_s": rates,
        "train_share": train_shares,
    }
    write_outputs(args, text, record)
    return 0


def report_parts(args: argparse.Namespace) -> int:
    """Print (and write with ``--json`` / ``--text``) the microseconds per call of :func:`collection_parts`."""
    parts = {env_id: collection_parts(env_id, args.seed, args.parts) for env_id in args.envs}
    lines = [
        f"Pieces of our collection beyond env.step, microseconds per call (one call per vectorized step), mean of"
        f" {args.parts} calls, {_machine_line()}",
        "",
        "| env | n_envs | NumPy forward (us) | of which torch.randn (us) | callbacks (us) |",
        "|---|---|---|---|---|",
    ]
    for env_id, by in parts.items():
        lines.append(
            f"| {env_id} | {by['n_envs']:.0f} | {by['numpy_forward']:.1f} | {by['torch_randn']:.1f} | {by['callbacks']:.1f} |"
        )
    text = "\n".join(lines)
    write_outputs(args, text, {"calls": args.parts, "microseconds_per_call": parts})
    return 0


def evaluation_rates(env_id: str, seed: int, episodes: int, repeats: int) -> dict[str, list[float]]:
    """
    ``evaluate_policy`` steps per second and ``predict`` microseconds per call, ours against SB3's, on one model of the
    Zoo's entry after one update (so that its actions are not the initial ones), interleaved over ``repeats`` rounds.

    :return: per measure (``evaluate_ours``, ``evaluate_sb3``: steps/s; ``predict_ours``, ``predict_sb3``: us per
        call), one value per round; and ``max_abs_action_difference`` between the two predicts (0: bit for bit)
    """
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    with tempfile.TemporaryDirectory() as folder:
        model, env, manager = build("sb3_trpo", env_id, seed, folder)
        model.learn(model.n_steps * model.n_envs)
        manager.seed = seed + 10_000
        eval_env = manager.create_envs(1, eval_env=True)
        sync_envs_normalization(env, eval_env)
        predicts: dict[str, Callable[..., Any]] = {
            "ours": model.predict,
            "sb3": lambda *a, **k: BaseAlgorithm.predict(model, *a, **k),
        }
        obs = np.stack([eval_env.observation_space.sample() for _ in range(64)])
        difference = max(
            float(
                np.max(
                    np.abs(
                        predicts["ours"](row[None], deterministic=True)[0] - predicts["sb3"](row[None], deterministic=True)[0]
                    )
                )
            )
            for row in obs
        )
        results: dict[str, list[float]] = {key: [] for key in ("evaluate_ours", "evaluate_sb3", "predict_ours", "predict_sb3")}
        for _ in range(repeats):
            for name, predict in predicts.items():
                model.predict = predict
                start = time.perf_counter()
                _, lengths = evaluate_policy(
                    model, eval_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
                )
                results[f"evaluate_{name}"].append(sum(lengths) / (time.perf_counter() - start))  # type: ignore[arg-type]
                start = time.perf_counter()
                for row in obs:
                    predict(row[None], deterministic=True)
                results[f"predict_{name}"].append((time.perf_counter() - start) / len(obs) * 1e6)
        env.close()
        eval_env.close()
    return {**results, "max_abs_action_difference": [difference]}


def evaluation_table(median: dict[str, dict[str, float]]) -> str:
    """The Markdown table of :func:`report_evaluation` (per env: the medians of :func:`evaluation_rates`, and ratios)."""
    lines = [
        "| env | evaluate_policy, SB3's predict | evaluate_policy, ours | ours / SB3's | predict(), SB3's (us)"
        " | predict(), ours (us) | SB3's / ours | max action difference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for env_id, by in median.items():
        lines.append(
            f"| {env_id} | {by['evaluate_sb3']:.0f} | {by['evaluate_ours']:.0f}"
            f" | {by['evaluate_ours'] / by['evaluate_sb3']:.2f}x"
            f" | {by['predict_sb3']:.0f} | {by['predict_ours']:.0f} | {by['predict_sb3'] / by['predict_ours']:.2f}x"
            f" | {by['max_abs_action_difference']:.1e} |"
        )
    return "\n".join(lines)


def report_evaluation(args: argparse.Namespace) -> int:
    """Print (and write with ``--json`` / ``--text``) the medians of :func:`evaluation_rates` and their ratios."""
    rates = {env_id: evaluation_rates(env_id, args.seed, args.evaluate, args.repeats) for env_id in args.envs}
    median = {env_id: {key: statistics.median(values) for key, values in by.items()} for env_id, by in rates.items()}
    lines = [
        f"evaluate_policy ({args.evaluate} deterministic episodes) steps/s and predict() us per call, ours against SB3's"
        f" predict on the same model, median of {args.repeats} interleaved rounds, {_machine_line()}",
        "",
        evaluation_table(median),
    ]
    text = "\n".join(lines)
    write_outputs(args, text, {"episodes": args.evaluate, "repeats": args.repeats, "median": median, "all": rates})
    return 0
