"""
Steps per second of data-parallel TRPO: 1 rank against N ranks at the same total batch, side by side
(``python -m benchmarks bench distributed``).

Each configuration runs in its own processes (gloo over loopback for N > 1), each rank pinned to its own core with
torch on one thread. The task's ``zoo_configs/trpo.yml`` entry sets the total batch (``n_envs * n_steps``) and the
critic's minibatch. With N ranks, each rank collects ``n_steps / N`` steps of the entry's ``n_envs`` envs
(``--split n_steps``, the default: each rank steps as many envs at once as one rank did, so a policy forward is
amortized over as many samples) or ``n_steps`` steps of ``n_envs / N`` envs (``--split n_envs``); every update sees
the same number of samples, and the critic (fitted on all ranks' samples) takes the same Adam steps on minibatches
of ``batch_size``. Each configuration learns one warm-up update, then ``--updates`` timed updates; rounds alternate
between the configurations (``--repeats``) and the median is reported. For each N > 1, N independent 1-rank runs at
once, one per core, give the machine's ceiling (their steps/s summed: cores that share caches, memory bandwidth or a
physical core do not add up to N)::

    python -m benchmarks bench distributed --env HalfCheetah-v5 --ranks 1 2 --updates 10 --repeats 3 \\
        --json benchmarks/distributed/bench_distributed.json
"""

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks import REPO_ROOT
from benchmarks.bench import timed
from benchmarks.entries import select_entry
from benchmarks.records import git_state, hardware, json_ready, versions


def free_port() -> int:
    """:return: a free TCP port on the loopback interface, for the ranks' rendezvous"""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def process_group(rank: int, world: int, port: int, minutes: int) -> Iterator[None]:
    """This process as rank ``rank`` of ``world`` (gloo over loopback; nothing for one rank), closed on exit."""
    import torch.distributed as dist

    from sb3_trpo.common.distributed import close_process_group

    if world > 1:
        init_method = f"tcp://127.0.0.1:{port}"
        dist.init_process_group(
            "gloo", init_method=init_method, rank=rank, world_size=world, timeout=timedelta(minutes=minutes)
        )
    try:
        yield
    finally:
        if world > 1:
            close_process_group()


def split_entry(entry: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
    """
    :param entry: a task's entry of ``zoo_configs/trpo.yml``
    :return: TRPO's keyword arguments (the Zoo's own keys left out), ``n_envs`` and ``normalize``
    """
    kwargs = {key: value for key, value in entry.items() if key not in ("n_envs", "normalize", "n_timesteps", "policy")}
    return kwargs, int(entry.get("n_envs", 1)), bool(entry.get("normalize", False))


def _worker(rank: int, world: int, port: int, spec: dict[str, Any], out: str) -> None:
    import torch as th
    import torch.distributed as dist
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_trpo import TRPO

    os.sched_setaffinity(0, {spec["first_core"] + rank})
    th.set_num_threads(1)
    if spec.get("independent"):
        # One of `world` independent single-process runs at once, one per core: the machine's own ceiling
        rank, world, out = 0, 1, f"{out}.{rank}"
    with process_group(rank, world, port, minutes=10):
        kwargs, n_envs, normalize = split_entry(spec["entry"])
        if spec["split"] == "n_envs":
            n_envs //= world
        else:
            kwargs["n_steps"] = int(kwargs.get("n_steps", 2048)) // world
        env = make_vec_env(spec["env"], n_envs=n_envs, seed=spec["seed"] + 1000 * rank)
        if normalize:
            env = VecNormalize(env)
        model = TRPO("MlpPolicy", env, seed=spec["seed"], device="cpu", data_parallel=world > 1, **kwargs)
        per_update = model.n_steps * n_envs * world
        model.learn(per_update)  # warm-up: one update
        if world > 1:
            dist.barrier()
        seconds_in = _time_parts(model)
        start = time.perf_counter()
        model.learn(per_update * spec["updates"], reset_num_timesteps=False)
        if world > 1:
            dist.barrier()
        seconds = time.perf_counter() - start
        if rank == 0:
            breakdown: dict[str, float] = {part: value / spec["updates"] for part, value in seconds_in.items()}
            result = {"seconds": seconds, "steps": per_update * spec["updates"], "seconds_per_update": breakdown}
            Path(out).write_text(json.dumps(result))


def _time_parts(model: Any) -> dict[str, float]:
    """
    Time from now on, on this rank: the collection, the update, the critic's regression within it, and the collectives
    (with their count).

    :return: the totals, filled in as the model learns
    """
    import torch.distributed as dist

    totals = {"collect_rollouts": 0.0, "train": 0.0, "critic": 0.0, "collectives": 0.0, "n_collectives": 0.0}
    model.collect_rollouts = timed(totals, "collect_rollouts", model.collect_rollouts)
    model.train = timed(totals, "train", model.train)
    model._fit_critic = timed(totals, "critic", model._fit_critic)
    for name in ("all_reduce", "all_gather", "broadcast"):
        setattr(dist, name, timed(totals, "collectives", getattr(dist, name), count="n_collectives"))
    return totals


def measure(world: int, spec: dict[str, Any]) -> dict[str, Any]:
    """
    :param world: number of ranks
    :param spec: the run's settings
    :return: steps per second of all ranks together, and rank 0's seconds per update in each part
    """
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "result.json")
        mp.spawn(_worker, args=(world, free_port(), spec, out), nprocs=world, join=True)
        result = json.loads(Path(out).read_text())
    return {"steps_per_second": result["steps"] / result["seconds"], "seconds_per_update": result["seconds_per_update"]}


def measure_independent(copies: int, spec: dict[str, Any]) -> float:
    """
    :param copies: number of single-process runs at once (the 1-rank configuration), one per core
    :param spec: the run's settings
    :return: the sum of their steps per second: what the cores give when nothing is shared between them
    """
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "result.json")
        mp.spawn(_worker, args=(copies, 0, {**spec, "independent": True}, out), nprocs=copies, join=True)
        results = [json.loads(Path(f"{out}.{copy}").read_text()) for copy in range(copies)]
    return sum(result["steps"] / result["seconds"] for result in results)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench distributed``."""
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--updates", type=int, default=10, help="timed updates per configuration and round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median reported)")
    parser.add_argument("--first-core", type=int, default=0, help="rank r runs on core first_core + r")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=["n_steps", "n_envs"], default="n_steps", help="what the ranks divide among them")
    parser.add_argument("--json", default="", help="write the record here")


def main(args: argparse.Namespace) -> int:
    if max(args.ranks) + args.first_core > (os.cpu_count() or 1):
        args.parser.error(
            f"--ranks up to {max(args.ranks)} from core {args.first_core} needs more cores than {os.cpu_count()}"
        )

    key, entry = select_entry(REPO_ROOT / "zoo_configs" / "trpo.yml", args.env)
    for world in args.ranks:
        if int(entry.get(args.split, 2048 if args.split == "n_steps" else 1)) % world:
            args.parser.error(f"{key}'s {args.split} must divide among {world} ranks (--split n_steps or n_envs)")
    spec = {
        "env": args.env,
        "entry": entry,
        "seed": args.seed,
        "updates": args.updates,
        "first_core": args.first_core,
        "split": args.split,
    }
    rounds: dict[int, list[float]] = {world: [] for world in args.ranks}
    parts: dict[int, list[dict[str, float]]] = {world: [] for world in args.ranks}
    ceiling: dict[int, list[float]] = {world: [] for world in args.ranks if world > 1}
    for _ in range(args.repeats):
        for world in args.ranks:
            result = measure(world, spec)
            rounds[world].append(result["steps_per_second"])
            parts[world].append(result["seconds_per_update"])
            if world in ceiling:
                ceiling[world].append(measure_independent(world, spec))
    medians = {world: statistics.median(values) for world, values in rounds.items()}
    ceilings = {world: statistics.median(values) for world, values in ceiling.items()}
    # Per part, the median over the rounds of rank 0's seconds per update
    breakdown = {
        world: {part: statistics.median(values[part] for values in parts[world]) for part in parts[world][0]}
        for world in args.ranks
    }
    base = medians[min(args.ranks)]
    for world in args.ranks:
        times = ", ".join(f"{part} {value:.3f}" for part, value in breakdown[world].items() if part != "n_collectives")
        print(f"{args.env}: {world} rank(s): {medians[world]:.0f} steps/s (x{medians[world] / base:.2f}); s/update: {times}")
        if world in ceilings:
            print(
                f"  {world} independent 1-rank runs at once: {ceilings[world]:.0f} steps/s together"
                f" (x{ceilings[world] / base:.2f})"
            )
    if args.json:
        record = {
            "env": args.env,
            "config_key": key,
            "hyperparams": json_ready(entry),
            "updates_timed": args.updates,
            "split": args.split,
            "rounds": {str(world): values for world, values in rounds.items()},
            "median_steps_per_second": {str(world): value for world, value in medians.items()},
            "speedup": {str(world): medians[world] / base for world in args.ranks},
            "seconds_per_update_rank_0": {str(world): value for world, value in breakdown.items()},
            # N independent 1-rank runs at once, one per core: what N cores give with nothing shared (steps/s summed)
            "rounds_independent": {str(world): values for world, values in ceiling.items()},
            "median_steps_per_second_independent": {str(world): value for world, value in ceilings.items()},
            "ceiling_speedup": {str(world): value / base for world, value in ceilings.items()},
            **git_state(),
            "versions": versions(),
            "hardware": hardware(),
            "command": args.command_line,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    return 0
