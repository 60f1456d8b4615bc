"""
Learning curves of data-parallel TRPO: N ranks against 1 process at the same total samples, on evaluation seeds
(``python -m benchmarks curves``).

Each run learns a task's ``zoo_configs/trpo.yml`` entry with ``n_envs`` envs in one process (1 rank), or ``n_envs / N``
envs on each of N gloo ranks over loopback: every update then holds the same number of samples from as many envs,
and is the update of one process holding them all (tests/test_distributed.py), so the curves should differ by seed
noise only. Rank 0 evaluates along the way and at the end (deterministic, on envs seeded apart) and appends the
record (seed role, commit, fingerprint, hyperparameters, versions, machine) to ``--out``/ENV.jsonl; finished runs
are skipped, so the grid resumes::

    python -m benchmarks curves run --envs Pendulum-v1 LunarLanderContinuous-v3 --seeds 100 101 102 103 104
    python -m benchmarks curves report --plot benchmarks/distributed/curves.png --docs docs/guide/data_parallel.md

The ranks of a run share the core the run is given (``--core``): curves, not speed (that is ``bench distributed``'s).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import REPO_ROOT
from benchmarks.bench.distributed import free_port, process_group, split_entry
from benchmarks.docs import replace_block
from benchmarks.entries import select_entry
from benchmarks.fingerprint import algorithm_fingerprint, is_stale
from benchmarks.grid import final_evaluation, make_callback
from benchmarks.plot import mean_curve, pyplot, save
from benchmarks.records import append_record, git_state, json_ready, provenance, read, seed_role
from benchmarks.stats import iqm_and_mean, with_ci

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "distributed" / "curves"
SECTION_START, SECTION_END = "<!-- distributed-curves:start -->", "<!-- distributed-curves:end -->"
ENVS = ("Pendulum-v1", "LunarLanderContinuous-v3")
N_EVALS = 10
EVAL_EPISODES = 10
FINAL_EVAL_EPISODES = 20


def _rank(rank: int, world: int, port: int, spec: dict[str, Any], out: str) -> None:
    import torch as th
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_trpo import TRPO

    th.set_num_threads(1)
    with process_group(rank, world, port, minutes=30):
        kwargs, n_envs, normalize = split_entry(spec["entry"])
        n_envs //= world
        budget, seed = int(spec["budget"]), spec["seed"]

        def make_env(n: int, env_seed: int, training: bool) -> Any:
            env = make_vec_env(spec["env"], n_envs=n, seed=env_seed)
            return VecNormalize(env, training=training, norm_reward=training) if normalize else env

        # The model seeds its envs seed + rank (data_parallel); the evaluation envs are seeded apart
        model = TRPO(
            "MlpPolicy", make_env(n_envs, seed, training=True), seed=seed, device="cpu", data_parallel=world > 1, **kwargs
        )
        # Evaluations every budget / N_EVALS steps of all ranks (num_timesteps counts them all)
        callback = make_callback(make_env(1, seed + 10_000, training=False), max(1, budget // N_EVALS), spec["eval_episodes"])
        start = time.perf_counter()
        model.learn(budget, callback=callback if rank == 0 else None)
        wall_clock = time.perf_counter() - start
        if rank != 0:
            return
        final_eval = final_evaluation(model, make_env(1, seed + 20_000, training=False), spec["final_eval_episodes"])
        record = {
            "algo": "sb3_trpo",
            "env": spec["env"],
            "seed": seed,
            "ranks": world,
            "n_envs_per_rank": n_envs,
            "budget": budget,
            "eval_episodes": spec["eval_episodes"],
            "timesteps": int(model.num_timesteps),
            "config_file": "zoo_configs/trpo.yml",
            "config_key": spec["config_key"],
            "hyperparams": json_ready(spec["entry"]),
            "learning_curve": callback.curve,
            "final_eval": final_eval,
            "wall_clock_s": wall_clock,
            **provenance(seed, spec["git"], spec["fingerprint"], spec["command"]),
        }
        Path(out).write_text(json.dumps(record))


def load_records(out: Path) -> list[dict[str, Any]]:
    """:return: every record in the results folder (last one of a run present twice)"""
    runs: dict[tuple[str, int, int], dict[str, Any]] = {}
    for path in sorted(out.glob("*.jsonl")):
        for record in read(path):
            runs[(record["env"], record["seed"], record["ranks"])] = record
    return list(runs.values())


def run(args: argparse.Namespace) -> int:
    import torch.multiprocessing as mp

    out = Path(args.out)
    fingerprint = algorithm_fingerprint("sb3_trpo")
    current = {"sb3_trpo": fingerprint}
    done = {(record["env"], record["seed"], record["ranks"]) for record in load_records(out) if not is_stale(record, current)}
    git = git_state()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    for env_id in args.envs:
        config_key, entry = select_entry(REPO_ROOT / "zoo_configs" / "trpo.yml", env_id)
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
                    "command": args.command_line,
                }
                print(f"[start] {env_id} seed {seed}, {world} rank(s)", flush=True)
                with tempfile.TemporaryDirectory() as folder:
                    result = Path(folder) / "record.json"
                    mp.spawn(_rank, args=(world, free_port(), spec, str(result)), nprocs=world, join=True)
                    record = json.loads(result.read_text())
                append_record(out / f"{env_id}.jsonl", record)
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
                estimate = iqm_and_mean(values)
                iqm, mean = with_ci(estimate, "iqm", 1), with_ci(estimate, "mean", 1)
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
    envs = sorted({record["env"] for record in records})
    figure, axes = pyplot().subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for axis, env_id in zip(axes[0], envs, strict=True):
        for world in sorted({record["ranks"] for record in records if record["env"] == env_id}):
            runs = [r for r in records if r["env"] == env_id and r["ranks"] == world]
            mean_curve(axis, runs, f"{world} rank{'s' if world > 1 else ''} (n={len(runs)})")
        axis.set_title(env_id)
        axis.set_xlabel("steps (all ranks)")
        axis.set_ylabel("evaluated return")
        axis.legend()
    figure.tight_layout()
    save(figure, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks curves``."""
    commands = parser.add_subparsers(dest="action", required=True)
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
    for command in (run_parser, report_parser):
        command.set_defaults(parser=command)


def main(args: argparse.Namespace) -> int:
    if args.action == "run":
        for seed in args.seeds:
            if seed_role(seed) != "evaluation":
                args.parser.error(f"--seeds: {seed} is not a development seed (100-199): these curves are published")
        return run(args)
    records = load_records(Path(args.out))
    if not records:
        args.parser.error(f"no records in {args.out}")
    table = report_table(records)
    print(table, end="")
    if args.plot:
        plot(records, Path(args.plot))
    if args.docs:
        replace_block(Path(args.docs), table, SECTION_START, SECTION_END)
    return 0
