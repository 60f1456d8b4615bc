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
import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


def timed(totals: dict[str, float], key: str, function: Callable, count: str | None = None) -> Callable:
    """:return: ``function``, adding the seconds of each call to ``totals[key]`` (and 1 to ``totals[count]``)"""

    def call(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - start
            if count is not None:
                totals[count] = totals.get(count, 0.0) + 1

    return call


@contextmanager
def patched(owner: Any, name: str, wrapper: Callable[[Callable], Callable]) -> Iterator[None]:
    """``owner.name`` (a module's function, a model's method) replaced by ``wrapper(owner.name)`` inside the block."""
    original = getattr(owner, name)
    setattr(owner, name, wrapper(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


@dataclass
class Snapshot:
    """Everything ``train()`` reads or changes, restored before each timed call so that every call does the same work."""

    policy: dict[str, Any]
    optimizer: dict[str, Any]
    buffer: Any


def snapshot(model: Any) -> Snapshot:
    """:return: the model's weights, optimizer state and rollout buffer, copied"""
    policy, optimizer = model.policy.state_dict(), model.policy.optimizer.state_dict()
    return Snapshot(copy.deepcopy(policy), copy.deepcopy(optimizer), copy.deepcopy(model.rollout_buffer))


def restore(model: Any, state: Snapshot, seed: int) -> None:
    """Put back a :func:`snapshot` and reseed the random generators."""
    from stable_baselines3.common.utils import set_random_seed

    model.policy.load_state_dict(state.policy)
    model.policy.optimizer.load_state_dict(state.optimizer)
    model.rollout_buffer = copy.deepcopy(state.buffer)
    set_random_seed(seed)


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
