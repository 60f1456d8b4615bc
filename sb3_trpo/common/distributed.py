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
- the initial parameters (:meth:`DataParallel.broadcast_parameters`, from rank 0).

The process group is the user's (``torch.distributed.init_process_group``, e.g. under ``torchrun``); its timeout
bounds how long a rank waits for a dead or hung peer before raising.
"""

from collections.abc import Sequence

import torch as th
import torch.distributed as dist
from torch import nn


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
