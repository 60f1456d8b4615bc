"""
Data-parallel natural-gradient updates over ``torch.distributed`` (gloo on CPU, NCCL on GPU).

Each rank (process) collects its own rollouts with its own envs; the update is then the one of a single process
holding all the ranks' samples (equal numbers of samples per rank): every quantity that is a mean over the batch is
averaged across the ranks with an all-reduce, and everything else is computed identically on every rank, so the
parameters stay bit for bit equal everywhere. :class:`DataParallel` holds the collectives the update needs:

- the mean and standard deviation of the advantages over all ranks' samples (:meth:`DataParallel.normalize`);
- the policy gradient ``g`` and the objective (:meth:`DataParallel.mean`);
- each Fisher-vector product ``F v`` (:meth:`DataParallel.mean`; conjugate gradient then runs identically on every
  rank);
- the objective and KL of each line-search candidate (:meth:`DataParallel.mean_values`);
- the critic's gradients of each minibatch, with its loss so that a minibatch is skipped on all ranks or on none
  (:meth:`DataParallel.mean_gradients`);
- the initial parameters (:meth:`DataParallel.broadcast_parameters`, from rank 0);
- ``VecNormalize``'s running statistics (:meth:`DataParallel.share_running_statistics`): each rank's observations
  and returns since the last update, merged, so that every rank normalizes with the statistics of all ranks' data.

The process group is the user's (``torch.distributed.init_process_group``, e.g. under ``torchrun``); its timeout
bounds how long a rank waits for a dead or hung peer before raising.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch as th
import torch.distributed as dist
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, unwrap_vec_wrapper
from torch import nn


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


def _moments(rms: RunningMeanStd) -> Moments:
    return Moments(np.array(rms.mean, dtype=np.float64), np.array(rms.var, dtype=np.float64), float(rms.count))


def _running_stats(env: VecEnv | None) -> dict[str, RunningMeanStd]:
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


class DataParallel:
    """
    The collectives of a data-parallel update, over the default process group.

    :param device: the device of the tensors reduced (CPU with gloo; the rank's GPU with NCCL)
    :raises RuntimeError: when no process group is initialized
    """

    def __init__(self, device: th.device) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "data_parallel=True needs an initialized torch.distributed process group: launch with torchrun, or call "
                "torch.distributed.init_process_group(...) before creating the model"
            )
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device
        # VecNormalize's statistics at the last synchronization (the same on every rank), by name
        self._shared_moments: dict[str, Moments] = {}

    def mean(self, tensor: th.Tensor) -> th.Tensor:
        """
        :param tensor: this rank's value (e.g. the mean over its samples)
        :return: the mean of the ranks' values, the same tensor on every rank (a new tensor)
        """
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world_size

    def mean_values(self, *values: float) -> tuple[float, ...]:
        """
        :param values: this rank's scalars
        :return: the mean of each over the ranks (one collective for all of them)
        """
        means = self.mean(th.tensor(values, dtype=th.float64, device=self.device))
        return tuple(float(value) for value in means.cpu())

    def normalize(self, advantages: th.Tensor, eps: float = 1e-8) -> th.Tensor:
        """
        Advantages shifted and scaled by the mean and (unbiased) standard deviation of all ranks' samples.

        :param advantages: this rank's advantages, shape (batch,)
        :param eps: added to the std to avoid a division by zero
        :return: the normalized advantages, shape (batch,)
        """
        # mean = sum(A) / n, var = (sum(A^2) - n mean^2) / (n - 1), over all ranks' samples
        moments = th.stack([advantages.sum(), (advantages * advantages).sum()]).double()
        count = th.tensor(float(advantages.numel()), dtype=th.float64, device=advantages.device)
        totals = self.mean(th.cat([moments, count.view(1)])) * self.world_size
        total, total_squares, n = totals[0], totals[1], totals[2]
        mean = total / n
        if n < 2:
            return advantages - mean.to(advantages.dtype)
        std = ((total_squares - n * mean * mean).clamp(min=0.0) / (n - 1)).sqrt()
        return (advantages - mean.to(advantages.dtype)) / (std.to(advantages.dtype) + eps)

    def mean_gradients(self, params: Sequence[nn.Parameter], loss: float) -> float:
        """
        Replace each parameter's ``.grad`` by its mean over the ranks (one collective for all), in place.

        :param params: the parameters whose gradients were just computed (a missing ``.grad`` counts as zero)
        :param loss: this rank's loss for these gradients
        :return: the mean loss over the ranks (not finite when any rank's is not)
        """
        grads = [param.grad if param.grad is not None else th.zeros_like(param) for param in params]
        flat = th.cat([grad.reshape(-1) for grad in grads] + [th.tensor([loss], dtype=grads[0].dtype, device=grads[0].device)])
        flat = self.mean(flat)
        offset = 0
        for param, grad in zip(params, grads, strict=True):
            numel = grad.numel()
            if param.grad is None:
                param.grad = grad
            param.grad.copy_(flat[offset : offset + numel].view_as(grad))
            offset += numel
        return float(flat[-1])

    def broadcast_parameters(self, module: nn.Module) -> None:
        """
        Give every rank rank 0's parameters and buffers (e.g. the initial weights).

        :param module: the module (policy)
        """
        with th.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def share_running_statistics(self, env: VecEnv | None) -> None:
        """
        Give every rank the ``VecNormalize`` statistics of all ranks' data (no-op without ``VecNormalize``).

        Each rank's data since the last synchronization (:func:`moments_added`) is merged over the ranks and into the
        statistics shared then, on every rank alike. The first call only records the statistics to start from (the
        same on every rank: fresh, or loaded from the same file).

        :param env: the training env (VecNormalize anywhere in its wrappers)
        """
        for name, rms in _running_stats(env).items():
            current = _moments(rms)
            shared = self._shared_moments.get(name)
            if shared is None:
                self._shared_moments[name] = current
                continue
            added = moments_added(shared, current)
            # Sum over the ranks of count, count * mean and count * (var + mean^2), in one collective
            moments = [added.n * added.mean.ravel(), added.n * (added.var + added.mean**2).ravel()]
            flat = np.concatenate([[added.n], *moments])
            totals = self.mean(th.as_tensor(flat, dtype=th.float64, device=self.device)).cpu().numpy() * self.world_size
            size = added.mean.size
            count = float(totals[0])
            rms.mean, rms.var, rms.count = shared.mean.copy(), shared.var.copy(), shared.n
            if count > 0:
                mean = totals[1 : 1 + size] / count
                var = np.maximum(totals[1 + size :] / count - mean * mean, 0.0)
                rms.update_from_moments(mean.reshape(shared.mean.shape), var.reshape(shared.var.shape), count)
            self._shared_moments[name] = _moments(rms)
