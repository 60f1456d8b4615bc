"""
RL Zoo (``rl_zoo3``) integration of sb3_trpo's algorithms, under the ``--algo`` names of
:data:`sb3_trpo.zoo.registry.ALGORITHMS`: ``trpo`` (TRPO), ``npg`` (NPG), ``trpo_mask`` (MaskableTRPO), ``trpo_lstm``
(RecurrentTRPO) and ``trpo_mask_lstm`` (MaskableRecurrentTRPO).

- :mod:`~sb3_trpo.zoo.registry`: the one table of the algorithms, and :func:`register`, which puts them (and our
  Optuna samplers, :mod:`~sb3_trpo.zoo.tuning`) in the Zoo's tables;
- :mod:`~sb3_trpo.zoo.config`: hyperparameter files and the checks of a run's configuration;
- :mod:`~sb3_trpo.zoo.manager`: the Zoo's experiment manager with our additions;
- :mod:`~sb3_trpo.zoo.cli`: ``python -m sb3_trpo train|enjoy``, which calls :func:`register`;
- :mod:`~sb3_trpo.zoo.envpool`: EnvPool's environments as an SB3 ``VecEnv``;
- :mod:`~sb3_trpo.zoo.plugin`: the module to name with ``--gym-packages`` when running the Zoo's own scripts.

Importing this package changes nothing in the Zoo, and imports neither torch nor the Zoo. Its ``hyperparams``
attribute, a fresh copy of ``zoo_configs/trpo.yml``, is what the Zoo reads from ``-conf sb3_trpo.zoo``::

    python -m rl_zoo3.train --algo trpo --env CartPole-v1 --gym-packages sb3_trpo.zoo.plugin -conf sb3_trpo.zoo
"""

from typing import Any

from sb3_trpo.zoo.config import (
    ConfigError,
    MissingDependencyError,
    algorithm_class,
    default_config_path,
    entry_marks,
    load_config,
)

# The checks of sb3_trpo.zoo.config, reachable here too
from sb3_trpo.zoo.config import ZOO_KEYS, check_hyperparameter_types, check_hyperparameters, check_run  # noqa: F401
from sb3_trpo.zoo.config import rl_zoo_config_path, select_entry, zoo_trust_region  # noqa: F401
from sb3_trpo.zoo.registry import ALGORITHMS, DEFAULT_ALGO, MASKABLE_ALGORITHMS, register


def __getattr__(name: str) -> Any:
    # `hyperparams`: a fresh copy each time, since the Zoo updates the entry it picks in place
    if name != "hyperparams":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return load_config(default_config_path())


# The documented names (docs/api.md)
__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGO",
    "MASKABLE_ALGORITHMS",
    "ConfigError",
    "MissingDependencyError",
    "algorithm_class",
    "default_config_path",
    "entry_marks",
    "load_config",
    "register",
]
