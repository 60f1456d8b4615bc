"""Trust Region Policy Optimization (TRPO) as a Stable-Baselines3 algorithm."""

import os

from sb3_trpo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_trpo.trpo import TRPO

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = ["TRPO", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "__version__"]
