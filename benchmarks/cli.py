"""
``python -m benchmarks COMMAND [ARGS]``, run from the repository's root: the harness's one command line. Each command
was a script of ``scripts/`` before 0.2.0, with the same arguments (the records' ``command`` fields name the scripts;
docs/guide/reproducing.md has the table). Only the chosen command's module is imported (most import torch, the RL Zoo
or matplotlib), so ``--help`` is quick.
"""

import argparse
import shlex
import sys
from types import ModuleType

#: each command and what it does (its module's ``add_arguments`` adds its options, ``main`` runs it)
COMMANDS = {
    "run": "run a grid of algorithms x environments x seeds, one record per run (resumable)",
    "records": "compact records: move their per-update logs to side files, attach, fetch or publish them",
    "report": "the reports of the records: evaluation (and the headline, the summary), robustness, carry-over",
    "plot": "plot and tabulate a results folder (the tuning-seed grid's tables and plots)",
    "ablation": "the ablation of TRPO's options and NPG: run it, or report it",
    "curves": "learning curves of data-parallel TRPO, N ranks against 1: run them, or report them",
    "fingerprint": "the numerical fingerprint of our algorithms (what a record measured)",
    "bench": "timings: update, learn, recurrent, distributed, cli-help",
    "check": "checks over long training: learning (fast path against reference), soak",
    "docs": "build the docs, check every internal link and image, screenshot the main pages",
}


def _module(command: str) -> ModuleType:
    # the command's module, imported when the command runs
    if command == "run":
        from benchmarks import grid

        return grid
    if command == "records":
        from benchmarks import records

        return records
    if command == "report":
        from benchmarks import report

        return report
    if command == "plot":
        from benchmarks import plot

        return plot
    if command == "ablation":
        from benchmarks import ablation

        return ablation
    if command == "curves":
        from benchmarks import curves

        return curves
    if command == "fingerprint":
        from benchmarks import fingerprint

        return fingerprint
    if command == "bench":
        from benchmarks import bench

        return bench
    if command == "check":
        from benchmarks import check

        return check
    from benchmarks import docs

    return docs


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: the command and its arguments (``sys.argv[1:]`` when None)
    :return: the command's exit status
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="The benchmark harness of sb3_trpo (run from the repository's root).",
        epilog="python -m benchmarks COMMAND --help: the command's options",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in COMMANDS.items():
        command = commands.add_parser(name, help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
        if argv[:1] == [name]:
            module = _module(name)
            command.description = module.__doc__
            module.add_arguments(command)
            command.set_defaults(handler=module.main, parser=command)
    args = parser.parse_args(argv)
    # what the records and timings say made them
    args.command_line = shlex.join(["python", "-m", "benchmarks", *argv])
    return int(args.handler(args))
