"""``VecNormalize``'s running statistics shared by the ranks of a data-parallel job: each rank's data since the last
synchronization, merged over the ranks (:meth:`sb3_trpo.common.distributed.DataParallel.share_running_statistics`)."""

from typing import NamedTuple

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_wrapper


class Moments(NamedTuple):
    """Mean, (population) variance and count of some data, as SB3's ``RunningMeanStd`` keeps them."""

    mean: np.ndarray
    var: np.ndarray
    n: float


def moments_added(before: Moments, after: Moments) -> Moments:
    """
    The moments of the data a ``RunningMeanStd`` took in between two of its states.

    ``RunningMeanStd.update_from_moments`` merges a batch into the running moments exactly (the parallel-variance
    formula); this inverts it: with ``m = after.n - before.n`` and ``delta = (after.mean - before.mean) * after.n / m``,
    the data's mean is ``before.mean + delta`` and its sum of squared deviations is
    ``after.var * after.n - before.var * before.n - delta^2 * before.n * m / after.n``. (Several
    batches taken in one after the other are one batch: the formula is exact for their union.)

    :param before: the statistics at the last synchronization
    :param after: the statistics now
    :return: the moments of the data taken in since (count 0: none)
    """
    count = after.n - before.n
    if count <= 0:
        return Moments(np.zeros_like(after.mean), np.zeros_like(after.var), 0.0)
    delta = (after.mean - before.mean) * after.n / count
    squares = after.var * after.n - before.var * before.n - delta * delta * before.n * count / after.n
    return Moments(before.mean + delta, np.maximum(squares, 0.0) / count, count)


def moments_of(rms: RunningMeanStd) -> Moments:
    return Moments(np.array(rms.mean, dtype=np.float64), np.array(rms.var, dtype=np.float64), float(rms.count))


def running_statistics(env: VecEnv | None) -> dict[str, RunningMeanStd]:
    # VecNormalize's running statistics by name (obs_rms is a dict of them for Dict observations), or none
    vec_normalize = unwrap_vec_wrapper(env, VecNormalize) if env is not None else None
    if not isinstance(vec_normalize, VecNormalize):
        return {}
    stats: dict[str, RunningMeanStd] = {"ret_rms": vec_normalize.ret_rms}
    if isinstance(vec_normalize.obs_rms, dict):
        stats.update({f"obs_rms/{key}": rms for key, rms in vec_normalize.obs_rms.items()})
    elif vec_normalize.obs_rms is not None:
        stats["obs_rms"] = vec_normalize.obs_rms
    return stats
