"""
Timings (``python -m benchmarks bench SUBCOMMAND``), each on one core and one torch thread, interleaved rounds:

- ``update``: one TRPO update (``train()`` alone) of ours against sb3-contrib's, on the same data and weights;
- ``learn``: ``learn()`` steps per second of ours against the env alone, sb3-contrib's TRPO and SB3's PPO (and, with
  ``--evaluate`` or ``--parts``, the evaluation's and the collection's pieces);
- ``recurrent``: RecurrentTRPO's update with one LSTM call per sequence against sb3-contrib's step-by-step loop;
- ``distributed``: data-parallel TRPO, 1 rank against N ranks at the same total batch;
- ``cli-help``: the wall-clock time of ``python -m sb3_trpo --help``.
"""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommands of ``bench``, one per module of this package (imported here: they import torch)."""
    from benchmarks.bench import cli_help, distributed, learn, recurrent, update

    timings = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, module in (
        ("update", update),
        ("learn", learn),
        ("recurrent", recurrent),
        ("distributed", distributed),
        ("cli-help", cli_help),
    ):
        doc = (module.__doc__ or "").strip()
        timing = timings.add_parser(
            name, help=doc.split("\n\n")[0], description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(timing)
        timing.set_defaults(handler=module.main, parser=timing)


def main(args: argparse.Namespace) -> int:
    return int(args.handler(args))
