"""RL Zoo (``rl_zoo3``) integration of sb3_trpo's algorithms (being split into this package; see ``manager``)."""

import importlib
from typing import Any

from sb3_trpo.zoo.registry import ALGORITHMS, DEFAULT_ALGO, MASKABLE_ALGORITHMS, AlgorithmEntry


def __getattr__(name: str) -> Any:
    # The Zoo glue imports torch, SB3 and the Zoo: imported on first use of one of its names
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("sb3_trpo.zoo.manager"), name)


__all__ = ["ALGORITHMS", "DEFAULT_ALGO", "MASKABLE_ALGORITHMS", "AlgorithmEntry"]
