"""
Trust-region policy optimization for Stable-Baselines3: TRPO, NPG, MaskableTRPO, RecurrentTRPO and
MaskableRecurrentTRPO over one natural-gradient core.
"""

import os

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
