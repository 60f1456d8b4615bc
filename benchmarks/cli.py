"""
``python -m benchmarks COMMAND [ARGS]``, run from the repository's root: the harness's one command line. Each command
was a script of ``scripts/`` before 0.2.0, with the same arguments (the records' ``command`` fields name the scripts;
docs/guide/reproducing.md has the table). The modules import torch, the RL Zoo and matplotlib where they use them, so
``--help`` is quick.
"""

import argparse
import shlex
import sys

from benchmarks import ablation, bench, check, curves, docs, fingerprint, grid, plot, records, report

#: each command, its module (whose ``add_arguments`` adds its options and ``main`` runs it) and what it does
COMMANDS = {
    "run": (grid, "run a grid of algorithms x environments x seeds, one record per run (resumable)"),
    "records": (records, "compact records: move their per-update logs to side files, attach, fetch or publish them"),
    "report": (report, "the reports of the records: evaluation (and the headline, the summary), robustness, carry-over"),
    "plot": (plot, "plot and tabulate a results folder (the tuning-seed grid's tables and plots)"),
    "ablation": (ablation, "the ablation of TRPO's options and NPG: run it, or report it"),
    "curves": (curves, "learning curves of data-parallel TRPO, N ranks against 1: run them, or report them"),
    "fingerprint": (fingerprint, "the numerical fingerprint of our algorithms (what a record measured)"),
    "bench": (bench, "timings: update, learn, recurrent, distributed, cli-help"),
    "check": (check, "checks over long training: learning (fast path against reference), soak"),
    "docs": (docs, "build the docs, check every internal link and image, screenshot the main pages"),
}


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
    for name, (module, text) in COMMANDS.items():
        command = commands.add_parser(name, help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
        if argv[:1] == [name]:  # the chosen command's options only: ``bench`` imports torch to add its own
            command.description = module.__doc__
            module.add_arguments(command)
            command.set_defaults(handler=module.main, parser=command)
    args = parser.parse_args(argv)
    # what the records and timings say made them
    args.command_line = shlex.join(["python", "-m", "benchmarks", *argv])
    return int(args.handler(args))
