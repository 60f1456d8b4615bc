"""
The one table of sb3_trpo's algorithms by ``--algo`` name, read by the CLI, the RL Zoo registration and the benchmark
harness, and :func:`register`, which puts them in the RL Zoo's tables. Importing it imports nothing heavy (no torch,
Stable-Baselines3 or RL Zoo), so that ``python -m sb3_trpo --help`` stays fast: classes are imported when needed.
"""

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AlgorithmEntry:
    """
    One algorithm of the family.

    :param name: the ``--algo`` name, also the Zoo's key and the stem of its default file ``zoo_configs/<name>.yml``
    :param module: the module that defines the class
    :param class_name: the class's name in ``module``
    :param maskable: whether its models take action masks (evaluated under the env's masks)
    :param recurrent: whether its policy is recurrent (an LSTM)
    :param sampler: the name of its Optuna sampler in :mod:`sb3_trpo.zoo.tuning`, None where ``-optimize`` is not
        available (the maskable ones: the Zoo's trial evaluations pass no masks)
    """

    name: str
    module: str
    class_name: str
    maskable: bool = False
    recurrent: bool = False
    sampler: str | None = None

    def load(self) -> type[Any]:
        """:return: the algorithm class (imported on this call)"""
        return getattr(importlib.import_module(self.module), self.class_name)


#: sb3_trpo's algorithms by ``--algo`` name, in the order the CLI lists them
ALGORITHMS: dict[str, AlgorithmEntry] = {
    entry.name: entry
    for entry in (
        AlgorithmEntry("trpo", "sb3_trpo.trpo", "TRPO", sampler="sample_trpo_params"),
        AlgorithmEntry("npg", "sb3_trpo.npg", "NPG", sampler="sample_npg_params"),
        AlgorithmEntry("trpo_mask", "sb3_trpo.trpo_mask", "MaskableTRPO", maskable=True),
        # RecurrentTRPO's search space is TRPO's: the same arguments, its network on top of the LSTM
        AlgorithmEntry("trpo_lstm", "sb3_trpo.trpo_recurrent", "RecurrentTRPO", recurrent=True, sampler="sample_trpo_params"),
        AlgorithmEntry(
            "trpo_mask_lstm", "sb3_trpo.trpo_mask_recurrent", "MaskableRecurrentTRPO", maskable=True, recurrent=True
        ),
    )
}
#: the ``--algo`` names whose models take action masks
MASKABLE_ALGORITHMS = frozenset(name for name, entry in ALGORITHMS.items() if entry.maskable)
DEFAULT_ALGO = "trpo"


def register() -> None:
    """
    Make the RL Zoo's ``--algo`` names of :data:`ALGORITHMS` use sb3_trpo's classes in this process (``trpo`` replaces
    sb3-contrib's TRPO), with our Optuna samplers for ``-optimize`` (:mod:`sb3_trpo.zoo.tuning`), and register the
    masked environments of :mod:`sb3_trpo.envs`. Calling it again changes nothing.

    ``rl_zoo3.utils.ALGOS`` is the one table that ``rl_zoo3.train``, ``rl_zoo3.enjoy`` and the experiment manager read,
    so updating its entries in place is enough.
    """
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    import sb3_trpo.envs  # noqa: F401 (registers the masked environments with gymnasium)
    from sb3_trpo.zoo import tuning

    for name, entry in ALGORITHMS.items():
        ALGOS[name] = entry.load()
        if entry.sampler is not None:
            HYPERPARAMS_SAMPLER[name] = getattr(tuning, entry.sampler)
        HYPERPARAMS_CONVERTER.setdefault(name, HYPERPARAMS_CONVERTER["trpo"])
