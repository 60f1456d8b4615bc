"""Checkpoints of a data-parallel job: a job restarted (e.g. by ``torchrun --max-restarts``) resumes from the last one."""

import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
import torch.distributed as dist
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_wrapper

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm


CHECKPOINT_MODEL = "model.zip"
CHECKPOINT_VEC_NORMALIZE = "vec_normalize.pkl"


def _rng_file(folder: Path, rank: int) -> Path:
    return folder / f"rng_rank{rank}.pt"


def save_checkpoint(model: "BaseAlgorithm", folder: str | Path) -> None:
    """
    Save a data-parallel job's state, collectively (every rank calls it at the same point).

    Rank 0 writes the model (parameters, optimizer state, options, step count) and VecNormalize's statistics; every
    rank writes its random generators' states (torch, NumPy, Python). The files go to a new folder that replaces the
    previous checkpoint only once every rank has written (a crash while saving leaves the previous checkpoint whole).
    The folder must be visible to every rank (one machine, or a shared filesystem).

    :param model: the model (``data_parallel=True``)
    :param folder: the checkpoint folder
    """
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".saving")
    rank = dist.get_rank()
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    dist.barrier()
    rng = {"torch": th.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    th.save(rng, _rng_file(staging, rank))
    if rank == 0:
        model.save(staging / CHECKPOINT_MODEL)
        training_env = model.get_env()
        vec_normalize = unwrap_vec_wrapper(training_env, VecNormalize) if training_env is not None else None
        if isinstance(vec_normalize, VecNormalize):
            vec_normalize.save(str(staging / CHECKPOINT_VEC_NORMALIZE))
    dist.barrier()
    if rank == 0:
        previous = folder.with_name(folder.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        if folder.exists():
            folder.rename(previous)
        staging.rename(folder)
        shutil.rmtree(previous, ignore_errors=True)
    dist.barrier()


def load_checkpoint(
    algorithm: type["BaseAlgorithm"], folder: str | Path, env: VecEnv, **kwargs: Any
) -> "BaseAlgorithm | None":
    """
    Resume a data-parallel job from its last checkpoint, collectively (every rank calls it); None when there is none.

    Loads the model (``data_parallel=True``), VecNormalize's statistics into ``env`` (which must wrap the same
    ``VecNormalize`` layout as when saved) and this rank's random generators. Continue with
    ``model.learn(remaining_timesteps, reset_num_timesteps=False)`` (SB3 adds the budget to the steps already taken;
    ``model.num_timesteps`` and the budget both count the steps of all ranks): the envs start new episodes.

    :param algorithm: the model's class (TRPO, NPG, ...)
    :param folder: the checkpoint folder of :func:`save_checkpoint`
    :param env: this rank's training env
    :param kwargs: more arguments of ``algorithm.load``
    :return: the model, or None when the folder holds no checkpoint
    """
    folder = Path(folder)
    if not (folder / CHECKPOINT_MODEL).exists():
        return None
    vec_normalize = unwrap_vec_wrapper(env, VecNormalize)
    if isinstance(vec_normalize, VecNormalize) and (folder / CHECKPOINT_VEC_NORMALIZE).exists():
        saved = VecNormalize.load(str(folder / CHECKPOINT_VEC_NORMALIZE), vec_normalize.venv)
        vec_normalize.obs_rms, vec_normalize.ret_rms = saved.obs_rms, saved.ret_rms
    model = algorithm.load(folder / CHECKPOINT_MODEL, env=env, data_parallel=True, **kwargs)
    rng = th.load(_rng_file(folder, dist.get_rank()), weights_only=False)
    th.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return model


class DataParallelCheckpoint(BaseCallback):
    """
    Save a data-parallel job's checkpoint (:func:`save_checkpoint`) every ``every_n_updates`` updates.

    :param folder: the checkpoint folder
    :param every_n_updates: updates between checkpoints
    """

    def __init__(self, folder: str | Path, every_n_updates: int = 10) -> None:
        super().__init__()
        if every_n_updates < 1:
            raise ValueError(f"`every_n_updates` must be an integer >= 1, got {every_n_updates!r}")
        self.folder = Path(folder)
        self.every_n_updates = every_n_updates

    def _on_rollout_start(self) -> None:
        # After an update (the rollouts start after each train()), on every rank at the same update
        n_updates = int(getattr(self.model, "_n_updates", 0))
        if n_updates > 0 and n_updates % self.every_n_updates == 0:
            save_checkpoint(self.model, self.folder)

    def _on_step(self) -> bool:
        return True
