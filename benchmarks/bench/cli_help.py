"""
Wall-clock time of the command line's help: ``python -m sb3_trpo --help`` and ``python -m sb3_trpo train --help``.

Each command runs ``--repeats`` times in a fresh interpreter, pinned to one core (``taskset -c CORE`` where
``taskset`` exists), the commands interleaved; the table gives the median, the fastest and the slowest run::

    python -m benchmarks bench cli-help --repeats 7 --core 0

The help is printed without importing torch, Stable-Baselines3 or the RL Zoo (``sb3_trpo.zoo.cli``), so both commands
should take well under 2 s on an idle core. ``--max-median S`` exits with status 1 when a median is above ``S``.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

COMMANDS = {
    "python -m sb3_trpo --help": ["-m", "sb3_trpo", "--help"],
    "python -m sb3_trpo train --help": ["-m", "sb3_trpo", "train", "--help"],
}


def time_command(arguments: Sequence[str], core: int | None) -> float:
    """
    :param arguments: the interpreter's arguments
    :param core: the CPU core to pin the process to (None: not pinned)
    :return: seconds from start to exit
    """
    command = [sys.executable, *arguments]
    if core is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return elapsed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench cli-help``."""
    parser.add_argument("--repeats", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--core", type=int, default=0, help="CPU core to run on (default 0; -1: not pinned)")
    parser.add_argument("--max-median", type=float, default=None, help="exit 1 when a median is above this (seconds)")


def main(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        args.parser.error(f"--repeats must be >= 1, got {args.repeats}")
    core = None if args.core < 0 else args.core
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, arguments in COMMANDS.items():
            times[name].append(time_command(arguments, core))
    pinned = f"taskset -c {core}" if core is not None and shutil.which("taskset") else "not pinned"
    print(f"{args.repeats} runs each ({pinned}), seconds: median [min, max]")
    too_slow = False
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"  {name:<34} {median:.2f} [{min(runs):.2f}, {max(runs):.2f}]")
        too_slow |= args.max_median is not None and median > args.max_median
    return 1 if too_slow else 0
