"""
Checks over long training (``python -m benchmarks check``).

``check learning``: the fast path learns as well as the reference path. Trains ``TRPO`` on CartPole-v1 and
Pendulum-v1 with the RL Zoo's TRPO settings, for the same seeds, along two paths, and prints the evaluated mean return
of each (deterministic policy):

- ``fast`` (the default): Gauss-Newton Fisher products (closed form for MLP actors), the closed-form critic gradient
  with the fused-Adam shortcut, the bound rollout forward;
- ``reference``: ``fisher_product="double_backward"`` (Hessian-vector products of the KL by double backward) and the
  critic fitted through autograd and ``optimizer.step()``. (The bound rollout forward is bit for bit SB3's, so it
  is the same in both.)

``check soak``: train TRPO for a long time and check, after EVERY update, that nothing degrades silently. Per update
it records the KL(pi_old || pi_new) over the whole rollout batch (recomputed from a snapshot taken before ``train()``,
critic epochs included), whether the line search succeeded, the peak resident memory and whether every parameter is
finite. At the end it prints the worst KL / target_kl ratio, the line-search success rate and the growth of the peak
RSS from the 10th update to the last, and exits non-zero when a target is missed: worst KL <= target_kl, no
non-finite parameter, RSS growth < 50 MB.

Usage::

    taskset -c 0 python -m benchmarks check learning --seeds 0 1 2 --timesteps 100000 --json learning.json
    taskset -c 0 python -m benchmarks check soak            # 1M steps of Pendulum-v1 (RL Zoo TRPO settings)
    taskset -c 0 python -m benchmarks check soak --quick    # 200k steps
"""

import argparse
import json
import resource
import statistics
import time
from typing import Any

import numpy as np

# RL Zoo's TRPO settings (rl_zoo3/hyperparams/trpo.yml), with 2 envs
SETTINGS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98, gamma=0.99, n_critic_updates=20),
    "Pendulum-v1": dict(n_steps=1024, gamma=0.9, n_critic_updates=15, use_sde=True, sde_sample_freq=4),
}
PATHS = ("fast", "reference")


def _model(env_id: str, seed: int, settings: dict[str, Any], **kwargs: Any) -> Any:
    # TRPO with the Zoo's settings of a task on 2 envs, on one torch thread
    import torch as th
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_trpo import TRPO

    th.set_num_threads(1)
    return TRPO("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=seed), seed=seed, **settings, **kwargs)


def learn_and_evaluate(env_id: str, path: str, seed: int, timesteps: int, eval_episodes: int) -> float:
    """:return: the evaluated mean return (deterministic) of TRPO trained along ``path`` (``fast`` or ``reference``)"""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    model = _model(env_id, seed, SETTINGS[env_id], fisher_product="gauss_newton" if path == "fast" else "double_backward")
    if path == "reference":
        model._value_regression = None  # the critic through autograd
    model.learn(timesteps)
    mean_return, _ = evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=seed + 1000), n_eval_episodes=eval_episodes)
    return float(mean_return)  # type: ignore[arg-type]


def checked_train(model: Any, records: list[dict[str, float]]) -> None:
    """
    Make ``model.train()`` append, after each update, the KL(pi_old || pi_new) over the whole rollout batch (pi_old
    snapshotted before ``train()``, critic epochs included), whether the line search succeeded, the peak resident
    memory (MB; Linux reports ``ru_maxrss`` in KB) and whether every parameter is finite, to ``records``.
    """
    import torch as th

    from sb3_trpo.common.natural_gradient import detached_distribution, kl_old_new

    train = model.train

    def checked() -> None:
        observations = next(model.rollout_buffer.get(batch_size=None)).observations
        with th.no_grad():
            old = detached_distribution(model.policy.get_distribution(observations))
        train()
        with th.no_grad():
            kl = float(kl_old_new(old, model.policy.get_distribution(observations)).mean())
        record = {"update": model._n_updates, "kl": kl}
        record["line_search_success"] = float(model.logger.name_to_value["train/is_line_search_success"])
        record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        record["finite"] = float(all(bool(th.isfinite(param).all()) for param in model.policy.parameters()))
        records.append(record)

    model.train = checked


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``check learning`` and ``check soak``."""
    checks = parser.add_subparsers(dest="check", required=True, metavar="CHECK")
    learning = checks.add_parser("learning", help="the fast path learns as well as the reference path")
    learning.add_argument("--envs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    learning.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    learning.add_argument("--timesteps", type=int, default=100_000)
    learning.add_argument("--eval-episodes", type=int, default=10)
    learning.add_argument("--json", type=str, default=None)
    learning.set_defaults(handler=learning_main)
    soak = checks.add_parser("soak", help="train for long, checking the KL, finiteness and memory after every update")
    soak.add_argument("--env-id", default="Pendulum-v1", help="environment id")
    soak.add_argument("--n-timesteps", type=int, default=1_000_000, help="training budget (200k with --quick)")
    soak.add_argument("--quick", action="store_true", help="200k steps instead of 1M")
    soak.add_argument("--seed", type=int, default=0, help="random seed")
    soak.add_argument(
        "--max-rss-growth-mb", type=float, default=50.0, help="allowed growth of the peak RSS from the 10th update to the last"
    )
    soak.add_argument("--json-out", default=None, help="a JSON file for the per-update records and the summary")
    soak.set_defaults(handler=soak_main)


def main(args: argparse.Namespace) -> int:
    return int(args.handler(args))


def learning_main(args: argparse.Namespace) -> int:
    """``check learning``"""

    results: dict[str, dict[str, list[float]]] = {}
    for env_id in args.envs:
        for seed in args.seeds:
            for path in PATHS:
                start = time.perf_counter()
                mean_return = learn_and_evaluate(env_id, path, seed, args.timesteps, args.eval_episodes)
                results.setdefault(env_id, {}).setdefault(path, []).append(mean_return)
                print(f"{env_id} seed {seed} {path}: {mean_return:.1f} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n{'env':<14}{'fast':>22}{'reference':>22}   ({len(args.seeds)} seeds, {args.timesteps} steps, mean +/- std)")
    for env_id, by_path in results.items():
        cells = [f"{statistics.mean(by_path[p]):.1f} +/- {statistics.pstdev(by_path[p]):.1f}" for p in PATHS]
        print(f"{env_id:<14}" + "".join(f"{cell:>22}" for cell in cells))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"timesteps": args.timesteps, "seeds": args.seeds, "results": results}, file, indent=2)
    return 0


def soak_main(args: argparse.Namespace) -> int:
    """``check soak``"""
    options = {
        "env_id": args.env_id,
        "n_timesteps": 200_000 if args.quick else args.n_timesteps,
        "seed": args.seed,
        "max_rss_growth_mb": args.max_rss_growth_mb,
        "json_out": args.json_out,
    }
    model = _model(args.env_id, args.seed, SETTINGS["Pendulum-v1"])  # the RL Zoo's TRPO settings for Pendulum-v1
    records: list[dict[str, float]] = []
    checked_train(model, records)
    start = time.time()
    # log_interval beyond the number of updates: the logger keeps each update's values for the check
    model.learn(options["n_timesteps"], log_interval=10**9)
    elapsed = time.time() - start
    kls = np.array([record["kl"] for record in records])
    rss = np.array([record["peak_rss_mb"] for record in records])
    baseline = rss[min(9, len(rss) - 1)]
    summary = {
        "env_id": args.env_id,
        "n_timesteps": options["n_timesteps"],
        "n_updates": len(records),
        "target_kl": model.target_kl,
        "worst_kl_over_target": float(kls.max() / model.target_kl),
        "line_search_success_rate": float(np.mean([record["line_search_success"] for record in records])),
        "non_finite_updates": int(sum(1 - record["finite"] for record in records)),
        "peak_rss_mb_at_update_10": float(baseline),
        "peak_rss_mb_at_last_update": float(rss[-1]),
        "rss_growth_mb": float(rss[-1] - baseline),
        "seconds": elapsed,
        "command": args.command_line,
    }
    print(json.dumps(summary, indent=2))
    if args.json_out:
        with open(args.json_out, "w") as file:
            json.dump({"args": options, "summary": summary, "records": records}, file)
    passed = (
        summary["worst_kl_over_target"] <= 1.0
        and summary["non_finite_updates"] == 0
        and summary["rss_growth_mb"] < args.max_rss_growth_mb
    )
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1
