"""
The one table of the algorithms the harness runs (a record's ``algo``, ``run --algos``):

- ours, from sb3_trpo's own table (:data:`sb3_trpo.zoo.registry.ALGORITHMS`), each as ``"sb3_" + name``;
- the harness's variant of ours: ``sb3_trpo_contrib_kl``, our TRPO with sb3-contrib's trust region
  (``kl_constraint="sb3_contrib"``), to run sb3-contrib's hyperparameters like for like;
- the peers: sb3-contrib's TRPO, MaskablePPO and RecurrentPPO, SB3's PPO.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sb3_trpo.zoo.registry import ALGORITHMS as REGISTRY
from sb3_trpo.zoo.registry import AlgorithmEntry

#: the fingerprint's tasks (:mod:`benchmarks.fingerprint`): a Gaussian and a categorical one, unless the algorithm's
#: family needs its own (masked ones from sb3_trpo.envs, memory ones that rl_zoo3 registers)
FINGERPRINT_TASKS = ("Pendulum-v1", "CartPole-v1")
FAMILY_FINGERPRINT_TASKS = {
    "trpo_mask": ("InvalidActionsDiscrete-v0", "MaskedTaxi-v4"),
    "trpo_lstm": ("PendulumNoVel-v1", "CartPoleNoVel-v1"),
    "trpo_mask_lstm": ("MaskedCueMemory-v0", "MaskedTaxi-v4"),
}


@dataclass(frozen=True)
class Algorithm:
    """
    One algorithm of the harness.

    :param name: its name in the records and on the command line
    :param entry: its class (module, name, whether it takes action masks or has an LSTM policy; ``load()``)
    :param label: its lines' name in the tables and plots
    :param config: the ``run`` option (an ``Args`` field) naming its hyperparameter file
    :param zoo_algo: the algorithm the RL Zoo's ``ExperimentManager`` parses its entries as
    :param rl_zoo_file: the RL Zoo's own file for it (``hyperparams/<file>.yml``): its entries are "the Zoo's settings"
    :param own_file: for our algorithms the Zoo has no file for, ``zoo_configs/<file>.yml``, whose entry is their
        headline instead
    :param options: constructor options added to the file's entry
    :param ours: our code (its records carry a fingerprint and go stale when it changes)
    :param fingerprint_tasks: the fingerprint's two tasks
    :param default: in ``run``'s default ``--algos``
    """

    name: str
    entry: AlgorithmEntry
    label: str
    config: str = "trpo_config"
    zoo_algo: str = "trpo"
    rl_zoo_file: str | None = None
    own_file: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    ours: bool = False
    fingerprint_tasks: tuple[str, str] = FINGERPRINT_TASKS
    default: bool = False

    @property
    def maskable(self) -> bool:
        """Whether it trains and is evaluated under the env's action masks."""
        return self.entry.maskable

    @property
    def recurrent(self) -> bool:
        """Whether its policy is an LSTM one."""
        return self.entry.recurrent

    @property
    def budget_config(self) -> str:
        """The ``run`` option of the file whose ``n_timesteps`` is the budget when only its family runs."""
        return "trpo_mask_config" if self.maskable else "trpo_lstm_config" if self.recurrent else "trpo_config"

    def load(self) -> type:
        """:return: its class (imported on this call: a worker imports only its own)"""
        return self.entry.load()


def _ours(name: str) -> Algorithm:
    entry = REGISTRY[name]
    family = entry.maskable or entry.recurrent  # the RL Zoo has no file for these: their own file's entry is theirs
    return Algorithm(
        "sb3_" + name,
        entry,
        f"sb3_trpo {entry.class_name} (ours)",
        config=f"{name}_config" if family else "trpo_config",
        rl_zoo_file=None if family else "trpo",
        own_file=name if family else None,
        ours=True,
        fingerprint_tasks=FAMILY_FINGERPRINT_TASKS.get(name, FINGERPRINT_TASKS),
        default=not family,
    )


def _peer(
    name: str, module: str, class_name: str, label: str, config: str = "trpo_config", zoo_algo: str = "trpo", **kwargs: Any
) -> Algorithm:
    maskable, recurrent = kwargs.pop("maskable", False), class_name.startswith("Recurrent")
    entry = AlgorithmEntry(name, module, class_name, maskable, recurrent)
    return Algorithm(name, entry, label, config, zoo_algo, **kwargs)


ALGORITHMS: dict[str, Algorithm] = {
    algorithm.name: algorithm
    for algorithm in (
        _ours("trpo"),
        dataclasses.replace(
            _ours("trpo"),
            name="sb3_trpo_contrib_kl",
            label="sb3_trpo_contrib_kl",
            rl_zoo_file=None,
            options={"kl_constraint": "sb3_contrib"},
            # sb3-contrib's trust region averages over the action dimensions: a 2-dimensional Box task
            fingerprint_tasks=("LunarLanderContinuous-v3", "CartPole-v1"),
            default=False,
        ),
        _peer("sb3_contrib", "sb3_contrib", "TRPO", "sb3-contrib TRPO", rl_zoo_file="trpo", default=True),
        _peer("ppo", "stable_baselines3", "PPO", "SB3 PPO", "ppo_config", "ppo", rl_zoo_file="ppo", default=True),
        _ours("npg"),
        _ours("trpo_mask"),
        _peer(
            "maskable_ppo",
            "sb3_contrib",
            "MaskablePPO",
            "sb3-contrib MaskablePPO",
            "maskable_ppo_config",
            "ppo",
            maskable=True,
        ),
        _ours("trpo_mask_lstm"),
        _ours("trpo_lstm"),
        _peer(
            "recurrent_ppo",
            "sb3_contrib",
            "RecurrentPPO",
            "sb3-contrib RecurrentPPO",
            "recurrent_ppo_config",
            "ppo_lstm",
            rl_zoo_file="ppo_lstm",
        ),
    )
}
#: our algorithms, whose records carry the fingerprint of the code that made them: the registry's, then our variants
OURS = tuple("sb3_" + name for name in REGISTRY) + tuple(
    name for name, algorithm in ALGORITHMS.items() if algorithm.ours and name.removeprefix("sb3_") not in REGISTRY
)
#: the RL Zoo's own file a ``--*-config rl_zoo`` option stands for
RL_ZOO_FILES = {"trpo_config": "trpo", "ppo_config": "ppo", "recurrent_ppo_config": "ppo_lstm"}
