"""
Soak run: train TRPO for a long time and check, after EVERY update, that nothing degrades silently.

Per update it records the KL(pi_old || pi_new) over the whole rollout batch (recomputed from a snapshot taken before
``train()``, critic epochs included), whether the line search succeeded, the peak resident memory and whether every
parameter is finite. At the end it prints the worst KL / target_kl ratio, the line-search success rate and the
growth of the peak RSS from the 10th update to the last, and exits non-zero when a target is missed:
worst KL <= target_kl, no non-finite parameter, RSS growth < 50 MB.

Usage::

    taskset -c 0 python scripts/soak.py            # 1M steps of Pendulum-v1 (RL Zoo TRPO settings)
    taskset -c 0 python scripts/soak.py --quick    # 200k steps
"""

import argparse
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_trpo import TRPO
from sb3_trpo.common.natural_gradient import detached_distribution, kl_old_new


@dataclass
class Args:
    env_id: str = "Pendulum-v1"
    """environment id"""
    n_timesteps: int = 1_000_000
    """training budget (200k with --quick)"""
    seed: int = 0
    """random seed"""
    max_rss_growth_mb: float = 50.0
    """allowed growth of the peak RSS from the 10th update to the last"""
    json_out: str | None = None
    """optional path of a JSON file with the per-update records and the summary"""


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports ``ru_maxrss`` in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class SoakMonitor(BaseCallback):
    """Snapshot pi_old after each rollout, then after train() measure the KL and the state of the model."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, float]] = []
        self._snapshot: tuple | None = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        data = next(self.model.rollout_buffer.get(batch_size=None))
        with th.no_grad():
            self._snapshot = (data.observations, detached_distribution(self.model.policy.get_distribution(data.observations)))

    def _record(self) -> None:
        if self._snapshot is None:
            return
        observations, old = self._snapshot
        with th.no_grad():
            kl = float(kl_old_new(old, self.model.policy.get_distribution(observations)).mean())
        finite = all(bool(th.isfinite(param).all()) for param in self.model.policy.parameters())
        values = self.model.logger.name_to_value
        self.records.append(
            {
                "update": self.model._n_updates,
                "kl": kl,
                "line_search_success": float(values["train/is_line_search_success"]),
                "peak_rss_mb": peak_rss_mb(),
                "finite": float(finite),
            }
        )
        self._snapshot = None

    def _on_rollout_start(self) -> None:
        self._record()

    def _on_training_end(self) -> None:
        self._record()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default=Args.env_id)
    parser.add_argument("--n-timesteps", type=int, default=Args.n_timesteps)
    parser.add_argument("--quick", action="store_true", help="200k steps instead of 1M")
    parser.add_argument("--seed", type=int, default=Args.seed)
    parser.add_argument("--max-rss-growth-mb", type=float, default=Args.max_rss_growth_mb)
    parser.add_argument("--json-out", default=None)
    namespace = parser.parse_args()
    args = Args(
        env_id=namespace.env_id,
        n_timesteps=200_000 if namespace.quick else namespace.n_timesteps,
        seed=namespace.seed,
        max_rss_growth_mb=namespace.max_rss_growth_mb,
        json_out=namespace.json_out,
    )
    th.set_num_threads(1)

    # RL Zoo TRPO settings for Pendulum-v1
    env = make_vec_env(args.env_id, n_envs=2, seed=args.seed)
    model = TRPO(
        "MlpPolicy", env, n_steps=1024, gamma=0.9, n_critic_updates=15, use_sde=True, sde_sample_freq=4, seed=args.seed
    )
    monitor = SoakMonitor()
    start = time.time()
    # log_interval beyond the number of updates: the logger keeps the last update's values for the monitor
    model.learn(args.n_timesteps, callback=monitor, log_interval=10**9)
    elapsed = time.time() - start

    records = monitor.records
    kls = np.array([record["kl"] for record in records])
    rss = np.array([record["peak_rss_mb"] for record in records])
    baseline = rss[min(9, len(rss) - 1)]
    summary = {
        "env_id": args.env_id,
        "n_timesteps": args.n_timesteps,
        "n_updates": len(records),
        "target_kl": model.target_kl,
        "worst_kl_over_target": float(kls.max() / model.target_kl),
        "line_search_success_rate": float(np.mean([record["line_search_success"] for record in records])),
        "non_finite_updates": int(sum(1 - record["finite"] for record in records)),
        "peak_rss_mb_at_update_10": float(baseline),
        "peak_rss_mb_at_last_update": float(rss[-1]),
        "rss_growth_mb": float(rss[-1] - baseline),
        "seconds": elapsed,
        "command": " ".join(["python", *sys.argv]),
    }
    print(json.dumps(summary, indent=2))
    if args.json_out:
        with open(args.json_out, "w") as file:
            json.dump({"args": asdict(args), "summary": summary, "records": records}, file)
    passed = (
        summary["worst_kl_over_target"] <= 1.0
        and summary["non_finite_updates"] == 0
        and summary["rss_growth_mb"] < args.max_rss_growth_mb
    )
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
