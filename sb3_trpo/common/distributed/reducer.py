"""
The collectives of the natural-gradient update, as one object the algorithm calls whether it runs alone
(:class:`Reducer`: every method leaves its input as it is) or as one rank of a data-parallel job over
``torch.distributed`` (:class:`DataParallel`), so that the update is the one of a single process holding all the
ranks' samples, and the parameters stay bit for bit equal on every rank: ``docs/guide/data_parallel.md``.

The process group is the user's (``torch.distributed.init_process_group``, e.g. under ``torchrun``); its timeout
bounds how long a rank waits for a dead or hung peer. A rank ends its job with :func:`close_process_group`.
"""

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch as th
import torch.distributed as dist
from stable_baselines3.common.callbacks import BaseCallback, ProgressBarCallback
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from sb3_trpo.common.distributed.statistics import Moments, moments_added, moments_of, running_statistics
from sb3_trpo.common.natural_gradient import normalize_advantages

#: A batch of samples: a tensor, or a dict of tensors (Dict observations)
Samples = TypeVar("Samples", th.Tensor, dict[str, th.Tensor])

# How long close_process_group releases the GIL for gloo's worker threads (see there)
GLOO_RELEASE_S = 0.1
# Up to this many gloo ranks, means are taken by all-gather and sum (DataParallel.mean)
GATHER_MEAN_MAX_RANKS = 8


def close_process_group() -> None:
    """
    ``torch.distributed.destroy_process_group``, then a short sleep: a gloo worker thread frees the last collective's
    tensors with the GIL, and if the interpreter is already finalizing the process aborts (SIGABRT) after a job that
    succeeded. The sleep lets those threads run first; no collective is made, so a rank whose peer died still closes.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    time.sleep(GLOO_RELEASE_S)


class CountAllRanksSteps(BaseCallback):
    """
    Make ``num_timesteps`` count the steps of all ranks: after each step of this rank's envs, the other ranks' as many.
    The first callback of a data-parallel ``learn``, so every other callback, the logs, the budget and the schedules
    read the job's count.
    """

    def __init__(self, world_size: int) -> None:
        super().__init__()
        self.world_size = world_size

    def _on_step(self) -> bool:
        self.model.num_timesteps += (self.world_size - 1) * self.training_env.num_envs
        return True


class AllRanksProgressBar(ProgressBarCallback):
    """SB3's progress bar on rank 0 of a data-parallel job, advancing by the steps of all ranks."""

    def __init__(self, world_size: int) -> None:
        super().__init__()
        self.world_size = world_size

    def _on_step(self) -> bool:
        self.pbar.update(self.training_env.num_envs * self.world_size)
        return True


class Reducer:
    """
    The collectives of a single process's update: there is nothing to reduce, so each returns its input (the same
    tensor or values). :class:`DataParallel` is the data-parallel one.
    """

    rank = 0
    world_size = 1

    def rank_seed(self, seed: int | None) -> int | None:
        """:return: the seed of this rank's envs and draws (``seed + rank``)"""
        return None if seed is None else seed + self.rank

    def step_callbacks(self, progress_bar: bool) -> tuple[list[BaseCallback], list[BaseCallback], bool]:
        """
        :param progress_bar: whether ``learn`` was asked for SB3's progress bar
        :return: the callbacks to run before and after the user's, and whether SB3 shows its own progress bar
        """
        return [], [], progress_bar

    def mean(self, tensor: th.Tensor) -> th.Tensor:
        """:return: the mean of the ranks' ``tensor`` (e.g. a gradient), the same bits on every rank"""
        return tensor

    def mean_values(self, *values: float) -> tuple[float, ...]:
        """:return: the mean of each scalar over the ranks"""
        return values

    def mean_product(self, product: Callable[[th.Tensor], th.Tensor]) -> Callable[[th.Tensor], th.Tensor]:
        """:return: ``v -> product(v)`` averaged over the ranks (e.g. a Fisher-vector product); ``product`` itself here"""
        return product

    def normalize(self, advantages: th.Tensor) -> th.Tensor:
        """:return: the advantages shifted and scaled by the mean and std of all ranks' samples"""
        return normalize_advantages(advantages)

    def mean_gradients(self, params: Sequence[nn.Parameter], loss: float) -> float:
        """
        Replace each parameter's ``.grad`` by its mean over the ranks, in place.

        :param loss: this rank's loss for these gradients
        :return: the mean loss over the ranks (not finite when any rank's is not)
        """
        return loss

    def gather(self, observations: Samples) -> Samples:
        """:return: all ranks' samples (a tensor, or a dict of tensors), in rank order, on every rank"""
        return observations

    def permutations(self, n_rows: int, n_samples: int, device: th.device) -> th.Tensor:
        """
        :return: ``n_rows`` random orders of ``n_samples`` samples (the critic's epochs), shape (n_rows, n_samples),
            drawn from the global generator of rank 0 and shared with every rank
        """
        return th.stack([th.randperm(n_samples, device=device) for _ in range(n_rows)])

    def broadcast_tensors(self, tensors: Sequence[th.Tensor]) -> None:
        """Give every rank rank 0's values of these tensors (e.g. the critic's parameters), in place."""

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers of ``module`` (the initial weights)."""

    def share_running_statistics(self, env: VecEnv | None) -> None:
        """Give every rank the ``VecNormalize`` statistics of all ranks' data (nothing without ``VecNormalize``)."""


class DataParallel(Reducer):
    """
    The reducer of one rank of a data-parallel job, over the default ``torch.distributed`` process group: every mean
    is over all ranks' samples, and rank 0's draws and parameters are every rank's.

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
        # With gloo (CPU), a mean over a few ranks is an all-gather then a sum in rank order on every rank: the same
        # bits everywhere, and about twice as fast as gloo's all-reduce for the update's small tensors (2 ranks over
        # loopback here: 0.5-1.0 ms against 1.6-2.3 ms for 30 to 5,000 floats). NCCL's all-reduce is used as it is.
        self._mean_by_gather = dist.get_backend() == "gloo" and self.world_size <= GATHER_MEAN_MAX_RANKS
        # VecNormalize's statistics at the last synchronization (the same on every rank), by name
        self._shared_moments: dict[str, Moments] = {}

    def step_callbacks(self, progress_bar: bool) -> tuple[list[BaseCallback], list[BaseCallback], bool]:
        # num_timesteps counts all ranks' steps, for every callback after the first (the progress bar's too, on rank 0)
        last: list[BaseCallback] = [AllRanksProgressBar(self.world_size)] if progress_bar and self.rank == 0 else []
        return [CountAllRanksSteps(self.world_size)], last, False

    def mean(self, tensor: th.Tensor) -> th.Tensor:
        total = tensor.detach().clone()
        if self._mean_by_gather:
            parts = [th.empty_like(total) for _ in range(self.world_size)]
            dist.all_gather(parts, total)
            total = parts[0]
            for part in parts[1:]:
                total += part
        else:
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world_size

    def mean_product(self, product: Callable[[th.Tensor], th.Tensor]) -> Callable[[th.Tensor], th.Tensor]:
        return lambda vector: self.mean(product(vector))

    def mean_values(self, *values: float) -> tuple[float, ...]:
        means = self.mean(th.tensor(values, dtype=th.float64, device=self.device))
        return tuple(float(value) for value in means.cpu())

    def normalize(self, advantages: th.Tensor, eps: float = 1e-8) -> th.Tensor:
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

    def gather(self, observations: Samples) -> Samples:
        if isinstance(observations, dict):
            return {key: self._gather_tensor(value) for key, value in observations.items()}
        return self._gather_tensor(observations)

    def _gather_tensor(self, tensor: th.Tensor) -> th.Tensor:
        """:return: all ranks' ``tensor`` concatenated in rank order (first dimensions may differ)"""
        tensor = tensor.detach().contiguous()
        sizes = [th.zeros(1, dtype=th.int64, device=tensor.device) for _ in range(self.world_size)]
        dist.all_gather(sizes, th.tensor([tensor.shape[0]], dtype=th.int64, device=tensor.device))
        counts = [int(size) for size in sizes]
        largest = max(counts)
        if tensor.shape[0] < largest:
            padding = tensor.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))
            tensor = th.cat([tensor, padding])
        parts = [th.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return th.cat([part[:count] for part, count in zip(parts, counts, strict=True)])

    def permutations(self, n_rows: int, n_samples: int, device: th.device) -> th.Tensor:
        # Rank 0 draws; the others receive (their generators untouched)
        if self.rank == 0:
            permutations = super().permutations(n_rows, n_samples, device)
        else:
            permutations = th.empty((n_rows, n_samples), dtype=th.int64, device=device)
        dist.broadcast(permutations, src=0)
        return permutations

    def broadcast_tensors(self, tensors: Sequence[th.Tensor]) -> None:
        if not tensors:
            return
        with th.no_grad():
            flat = th.cat([tensor.detach().reshape(-1) for tensor in tensors])
            dist.broadcast(flat, src=0)
            offset = 0
            for tensor in tensors:
                tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
                offset += tensor.numel()

    def broadcast_parameters(self, module: nn.Module) -> None:
        with th.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def share_running_statistics(self, env: VecEnv | None) -> None:
        # Each rank's data since the last call (statistics.moments_added), merged over the ranks into the statistics
        # shared then; the first call records the statistics to start from
        for name, rms in running_statistics(env).items():
            current = moments_of(rms)
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
            self._shared_moments[name] = moments_of(rms)
