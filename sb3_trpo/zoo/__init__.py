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

import importlib
from typing import Any

from sb3_trpo.zoo.registry import ALGORITHMS, DEFAULT_ALGO, MASKABLE_ALGORITHMS, register

# The names of sb3_trpo.zoo.config, imported on first use (`python -m sb3_trpo --help` imports the registry alone)
_CONFIG_NAMES = frozenset(
    {
        "ZOO_KEYS",
        "ConfigError",
        "MissingDependencyError",
        "algorithm_class",
        "check_hyperparameter_types",
        "check_hyperparameters",
        "check_run",
        "default_config_path",
        "entry_marks",
        "load_config",
        "rl_zoo_config_path",
        "select_entry",
        "zoo_trust_region",
    }
)


def __getattr__(name: str) -> Any:
    if name not in _CONFIG_NAMES and name != "hyperparams":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    config = importlib.import_module("sb3_trpo.zoo.config")
    # `-conf sb3_trpo.zoo` reads `hyperparams`: a fresh copy each time, since the Zoo updates the entry it picks in place
    return config.load_config(config.default_config_path()) if name == "hyperparams" else getattr(config, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_CONFIG_NAMES})


# The documented names (docs/api.md); the checks of sb3_trpo.zoo.config are reachable here too
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
