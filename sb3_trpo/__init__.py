"""
Trust-region policy optimization for Stable-Baselines3: TRPO, NPG, MaskableTRPO, RecurrentTRPO and
MaskableRecurrentTRPO over one natural-gradient core.

The algorithms and policies are imported on first use (``from sb3_trpo import TRPO`` works as usual), so that
``import sb3_trpo`` alone, e.g. to print ``python -m sb3_trpo --help``, does not import torch.
"""

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sb3_trpo.npg import NPG
    from sb3_trpo.trpo import TRPO
    from sb3_trpo.trpo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
    from sb3_trpo.trpo_mask import MaskableTRPO
    from sb3_trpo.trpo_mask_recurrent import MaskableRecurrentTRPO
    from sb3_trpo.trpo_recurrent import RecurrentTRPO

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

# Each public name and the module it is imported from on first use
_LAZY_NAMES = {
    "NPG": "sb3_trpo.npg",
    "TRPO": "sb3_trpo.trpo",
    "CnnPolicy": "sb3_trpo.trpo.policies",
    "MlpPolicy": "sb3_trpo.trpo.policies",
    "MultiInputPolicy": "sb3_trpo.trpo.policies",
    "MaskableTRPO": "sb3_trpo.trpo_mask",
    "MaskableRecurrentTRPO": "sb3_trpo.trpo_mask_recurrent",
    "RecurrentTRPO": "sb3_trpo.trpo_recurrent",
}
# The algorithms' subpackages, attributes of the package once imported (as when this module imported them eagerly)
_SUBPACKAGES = frozenset({"common", "npg", "trpo", "trpo_mask", "trpo_mask_recurrent", "trpo_recurrent"})


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})


__all__ = [
    "NPG",
    "TRPO",
    "CnnPolicy",
    "MaskableRecurrentTRPO",
    "MaskableTRPO",
    "MlpPolicy",
    "MultiInputPolicy",
    "RecurrentTRPO",
    "__version__",
]
