"""
Data-parallel training over ``torch.distributed``: the update's collectives (:mod:`~.reducer`: :class:`Reducer`, a
single process's, and :class:`DataParallel`, one rank's), VecNormalize's statistics shared by the ranks
(:mod:`~.statistics`) and the job's checkpoints (:mod:`~.checkpoint`).
"""

from sb3_trpo.common.distributed.checkpoint import DataParallelCheckpoint, load_checkpoint, save_checkpoint
from sb3_trpo.common.distributed.reducer import (
    AllRanksProgressBar,
    CountAllRanksSteps,
    DataParallel,
    Reducer,
    close_process_group,
)
from sb3_trpo.common.distributed.statistics import Moments, moments_added

__all__ = [
    "AllRanksProgressBar",
    "CountAllRanksSteps",
    "DataParallel",
    "DataParallelCheckpoint",
    "Moments",
    "Reducer",
    "close_process_group",
    "load_checkpoint",
    "moments_added",
    "save_checkpoint",
]
