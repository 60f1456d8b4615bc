"""
Same-learning check: the fast path learns as well as the reference path.

Trains ``TRPO`` on CartPole-v1 and Pendulum-v1 with the RL Zoo's TRPO settings, for the same seeds, along two paths,
and prints the evaluated mean return of each (deterministic policy):

- ``fast`` (the default): Gauss-Newton Fisher products (closed form for MLP actors), the closed-form critic gradient
  with the fused-Adam shortcut, the bound rollout forward;
- ``reference``: ``fisher_product="double_backward"`` (Hessian-vector products of the KL by double backward) and the
  critic fitted through autograd and ``optimizer.step()``. (The bound rollout forward is bit for bit SB3's, so it
  is the same in both.)

Usage::

    taskset -c 0 python scripts/compare_learning.py --seeds 0 1 2 --timesteps 100000 --json learning.json
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

# Import sb3_trpo from this checkout (not from another installed copy)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sb3_trpo import TRPO

# RL Zoo's TRPO settings (rl_zoo3/hyperparams/trpo.yml)
SETTINGS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98, gamma=0.99, n_critic_updates=20),
    "Pendulum-v1": dict(n_steps=1024, gamma=0.9, n_critic_updates=15, use_sde=True, sde_sample_freq=4),
}


PATHS = ("fast", "reference")


def run(env_id: str, path: str, seed: int, timesteps: int, eval_episodes: int) -> float:
    fisher_product = "gauss_newton" if path == "fast" else "double_backward"
    model = TRPO(
        "MlpPolicy", make_vec_env(env_id, n_envs=2, seed=seed), seed=seed, fisher_product=fisher_product, **SETTINGS[env_id]
    )
    if path == "reference":
        model._value_regression = None  # the critic through autograd
    model.learn(timesteps)
    mean_return, _ = evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=seed + 1000), n_eval_episodes=eval_episodes)
    return float(mean_return)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args()
    th.set_num_threads(1)

    results: dict[str, dict[str, list[float]]] = {}
    for env_id in args.envs:
        for seed in args.seeds:
            for path in PATHS:
                start = time.perf_counter()
                mean_return = run(env_id, path, seed, args.timesteps, args.eval_episodes)
                results.setdefault(env_id, {}).setdefault(path, []).append(mean_return)
                print(f"{env_id} seed {seed} {path}: {mean_return:.1f} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n{'env':<14}{'fast':>22}{'reference':>22}   ({len(args.seeds)} seeds, {args.timesteps} steps, mean +/- std)")
    for env_id, by_path in results.items():
        cells = [f"{statistics.mean(by_path[p]):.1f} +/- {statistics.pstdev(by_path[p]):.1f}" for p in PATHS]
        print(f"{env_id:<14}" + "".join(f"{cell:>22}" for cell in cells))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"timesteps": args.timesteps, "seeds": args.seeds, "results": results}, file, indent=2)


if __name__ == "__main__":
    main()
