"""
Learning curves of data-parallel TRPO: N ranks against 1 process at the same total samples, on evaluation seeds.

Each run learns a task's ``zoo_configs/trpo.yml`` entry with ``n_envs`` envs in one process (1 rank), or ``n_envs / N``
envs on each of N gloo ranks over loopback: every update then holds the same number of samples from as many envs,
and is the update of one process holding them all (tests/test_distributed.py), so the curves should differ by seed
noise only. Rank 0 evaluates along the way and at the end (deterministic, on envs seeded apart) and appends the
record (seed role, commit, fingerprint, hyperparameters, versions, machine) to ``--out``/ENV.jsonl; finished runs
are skipped, so the grid resumes::

    python scripts/curve_distributed.py run --envs Pendulum-v1 LunarLanderContinuous-v3 --seeds 100 101 102 103 104
    python scripts/curve_distributed.py report --plot benchmarks/distributed/curves.png --docs docs/guide/data_parallel.md

The ranks of a run share the core the run is given (``--core``): curves, not speed (that is bench_distributed.py's).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import torch.distributed as dist
import torch.multiprocessing as mp

from sb3_trpo.common.distributed import close_process_group

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # the sibling script: entries, versions, git state, machine, records
import evaluation_report  # IQM and mean with bootstrap CIs

DEFAULT_OUT = benchmark.REPO_ROOT / "benchmarks" / "distributed" / "curves"
SECTION_START, SECTION_END = "<!-- distributed-curves:start -->", "<!-- distributed-curves:end -->"
ENVS = ("Pendulum-v1", "LunarLanderContinuous-v3")
N_EVALS = 10
EVAL_EPISODES = 10
FINAL_EVAL_EPISODES = 20


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rank(rank: int, world: int, port: int, spec: dict[str, Any], out: str) -> None:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

    from sb3_trpo import TRPO

    th.set_num_threads(1)
    if world > 1:
        init_method = f"tcp://127.0.0.1:{port}"
        dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world, timeout=timedelta(minutes=30))
    try:
        entry = dict(spec["entry"])
        n_envs = int(entry.pop("n_envs", 1)) // world
        normalize = bool(entry.pop("normalize", False))
        budget = int(spec["budget"])
        entry.pop("n_timesteps", None)
        entry.pop("policy", None)
        seed = spec["seed"]

        def make_env(n: int, env_seed: int, training: bool) -> Any:
            env = make_vec_env(spec["env"], n_envs=n, seed=env_seed)
            return VecNormalize(env, training=training, norm_reward=training) if normalize else env

        # The model seeds its envs seed + rank (data_parallel); the evaluation envs are seeded apart
        env = make_env(n_envs, seed, training=True)
        model = TRPO("MlpPolicy", env, seed=seed, device="cpu", data_parallel=world > 1, **entry)
        # Evaluations every budget / N_EVALS steps of all ranks (num_timesteps counts them all)
        eval_env = make_env(1, seed + 10_000, training=False)
        callback = benchmark.make_benchmark_callback(eval_env, max(1, budget // N_EVALS), spec["eval_episodes"])
        start = time.perf_counter()
        model.learn(budget, callback=callback if rank == 0 else None)
        wall_clock = time.perf_counter() - start
        if rank != 0:
            return
        final_env = make_env(1, seed + 20_000, training=False)
        sync_envs_normalization(model.get_env(), final_env)
        returns, _ = benchmark.evaluation_function(False)(
            model, final_env, n_eval_episodes=spec["final_eval_episodes"], deterministic=True, return_episode_rewards=True
        )
        curve = callback.curve
        record = {
            "algo": "sb3_trpo",
            "env": spec["env"],
            "seed": seed,
            "seed_role": benchmark.seed_role(seed),
            "ranks": world,
            "n_envs_per_rank": n_envs,
            **spec["git"],
            "fingerprint": spec["fingerprint"],
            "budget": budget,
            "eval_episodes": spec["eval_episodes"],
            "timesteps": int(model.num_timesteps),
            "config_file": "zoo_configs/trpo.yml",
            "config_key": spec["config_key"],
            "hyperparams": benchmark._json_ready(spec["entry"]),
            "learning_curve": curve,
            "final_eval": {
                "episodes": len(returns),
                "mean": float(np.mean(returns)),
                "std": float(np.std(returns)),
                "returns": [float(value) for value in returns],  # type: ignore[union-attr]
            },
            "wall_clock_s": wall_clock,
            "versions": benchmark.versions(),
            "hardware": {
                "cpu": benchmark.cpu_model(),
                "cpu_capability": th.backends.cpu.get_cpu_capability(),
                "cpu_count": os.cpu_count(),
                "cores_pinned": sorted(os.sched_getaffinity(0)),
            },
            "command": spec["command"],
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        Path(out).write_text(json.dumps(record))
    finally:
        if world > 1:
            close_process_group()


def load_records(out: Path) -> list[dict[str, Any]]:
    """
    :return: every record in the results folder (last one of a run present twice)
    """
    runs: dict[tuple[str, int, int], dict[str, Any]] = {}
    for path in sorted(out.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                runs[(record["env"], record["seed"], record["ranks"])] = record
    return list(runs.values())


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    fingerprint = benchmark.algorithm_fingerprint("sb3_trpo")
    current = {"sb3_trpo": fingerprint}
    done = {
        (record["env"], record["seed"], record["ranks"])
        for record in load_records(out)
        if not benchmark.is_stale(record, current)
    }
    git = benchmark.git_state()
    command = "python scripts/curve_distributed.py " + " ".join(args.argv)
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    for env_id in args.envs:
        config_key, entry = benchmark.select_entry(str(benchmark.REPO_ROOT / "zoo_configs" / "trpo.yml"), env_id)
        for seed in args.seeds:
            for world in args.ranks:
                if (env_id, seed, world) in done:
                    continue
                if int(entry.get("n_envs", 1)) % world:
                    print(f"skip {env_id} with {world} ranks: {config_key}'s n_envs does not divide among them")
                    continue
                spec = {
                    "env": env_id,
                    "entry": entry,
                    "config_key": config_key,
                    "seed": seed,
                    "budget": args.budget or int(entry["n_timesteps"]),
                    "eval_episodes": args.eval_episodes,
                    "final_eval_episodes": args.final_eval_episodes,
                    "git": git,
                    "fingerprint": fingerprint,
                    "command": command,
                }
                print(f"[start] {env_id} seed {seed}, {world} rank(s)", flush=True)
                with tempfile.TemporaryDirectory() as folder:
                    result = Path(folder) / "record.json"
                    mp.spawn(_rank, args=(world, _free_port(), spec, str(result)), nprocs=world, join=True)
                    record = json.loads(result.read_text())
                benchmark.append_record(out / f"{env_id}.jsonl", record)
                print(f"[done] {env_id} seed {seed}, {world} rank(s): {record['final_eval']['mean']:.1f}", flush=True)
    return 0


def report_table(records: list[dict[str, Any]]) -> str:
    """
    :return: the Markdown table: each task and number of ranks, the final return (IQM and mean with bootstrap 95%
        CIs, mean +/- std, n) and the mean evaluated return along the curve
    """
    lines = [
        "| env | ranks | n | IQM [95% CI] | mean [95% CI] | mean +/- std | curve mean | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env_id in sorted({record["env"] for record in records}):
        for world in sorted({record["ranks"] for record in records if record["env"] == env_id}):
            runs = sorted((r for r in records if r["env"] == env_id and r["ranks"] == world), key=lambda r: r["seed"])
            values = np.array([run["final_eval"]["mean"] for run in runs])
            curve = np.mean([np.mean([point["mean"] for point in run["learning_curve"]]) for run in runs])
            seeds = f"{runs[0]['seed']}-{runs[-1]['seed']}" if len(runs) > 1 else str(runs[0]["seed"])
            if len(values) >= 2:
                estimate = evaluation_report.iqm_and_mean(values.reshape(-1, 1))
                iqm, mean = evaluation_report._with_ci(estimate, "iqm", 1), evaluation_report._with_ci(estimate, "mean", 1)
            else:
                iqm = mean = "n < 2"
            lines.append(
                f"| {env_id} | {world} | {len(values)} | {iqm} | {mean} | {values.mean():.1f} +/- {values.std():.1f}"
                f" | {curve:.1f} | {seeds} |"
            )
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """
    The mean evaluated return against all ranks' steps, for each task and number of ranks (shaded: +/- one std over
    the seeds).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({record["env"] for record in records})
    figure, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for axis, env_id in zip(axes[0], envs, strict=True):
        for world in sorted({record["ranks"] for record in records if record["env"] == env_id}):
            runs = [r for r in records if r["env"] == env_id and r["ranks"] == world]
            length = min(len(run["learning_curve"]) for run in runs)
            steps = np.array([point["timesteps"] for point in runs[0]["learning_curve"][:length]])
            returns = np.array([[point["mean"] for point in run["learning_curve"][:length]] for run in runs])
            mean, std = returns.mean(axis=0), returns.std(axis=0)
            axis.plot(steps, mean, label=f"{world} rank{'s' if world > 1 else ''} (n={len(runs)})")
            axis.fill_between(steps, mean - std, mean + std, alpha=0.2)
        axis.set_title(env_id)
        axis.set_xlabel("steps (all ranks)")
        axis.set_ylabel("evaluated return")
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="train the missing runs (resumable)")
    run_parser.add_argument("--envs", nargs="+", default=list(ENVS))
    run_parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    run_parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    run_parser.add_argument("--core", type=int, default=None, help="pin the run (all its ranks) to this core")
    run_parser.add_argument("--out", default=str(DEFAULT_OUT))
    run_parser.add_argument("--budget", type=int, default=0, help="steps of all ranks (default: the entry's n_timesteps)")
    run_parser.add_argument("--eval-episodes", type=int, default=EVAL_EPISODES)
    run_parser.add_argument("--final-eval-episodes", type=int, default=FINAL_EVAL_EPISODES)
    report_parser = commands.add_parser("report", help="the table (and plot) of the records")
    report_parser.add_argument("--out", default=str(DEFAULT_OUT))
    report_parser.add_argument("--plot", default="", help="write the curves' figure here")
    report_parser.add_argument(
        "--docs", default="", help="write the table into this Markdown page, between its <!-- distributed-curves --> markers"
    )
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.command == "run":
        for seed in args.seeds:
            if benchmark.seed_role(seed) != "evaluation":
                parser.error(f"--seeds: {seed} is not an evaluation seed (100-199): these curves are published")
        return run(args)
    records = load_records(Path(args.out))
    if not records:
        parser.error(f"no records in {args.out}")
    table = report_table(records)
    print(table, end="")
    if args.plot:
        plot(records, Path(args.plot))
    if args.docs:
        evaluation_report.plot_results.replace_block(Path(args.docs), table, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
