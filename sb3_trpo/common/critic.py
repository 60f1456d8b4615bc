"""
The critic's regression without autograd when the value function is a plain MLP.

TRPO fits the critic with many small Adam steps (the RL Zoo's MuJoCo settings: 20 epochs x 16 minibatches per
update), where autograd's bookkeeping costs more than the arithmetic: :class:`MlpRegression` writes the mean squared
error's gradient into preallocated ``.grad`` tensors with plain tensor operations, and :func:`fused_adam_step` calls
Adam's fused kernel directly.
"""

from collections.abc import Callable, Sequence

import torch as th
from torch import nn

from sb3_trpo.common.mlp import Layers, affine_layers, jacobian_transpose_vector, linearize, mlp_layers


class MlpRegression:
    """
    Mean squared error of an MLP ``v = f(x)`` against targets, and its gradient in every weight.

    :param layers: from :func:`sb3_trpo.common.mlp.mlp_layers`; the last layer has one output and no activation
    """

    def __init__(self, layers: Layers) -> None:
        if layers[-1][0].out_features != 1 or layers[-1][1] is not None:
            raise ValueError("The last layer must be a linear layer with one output (a value) and no activation")
        self.layers = layers
        self.parameters: list[th.Tensor] = [
            param for linear, _ in layers for param in (linear.weight, linear.bias) if param is not None
        ]

    def bind(self) -> Callable[[th.Tensor, th.Tensor], float]:
        """
        ``(inputs, targets) -> mean((targets - v)^2)`` as a Python float, its gradient written into each parameter's
        ``.grad``, with the weights and buffers looked up once (Python lookups cost as much as the arithmetic here).
        Valid while the parameters change in place; bind again after anything replaces them.
        """
        layers = affine_layers(self.layers)
        grads = (
            [_grad_buffer(linear.weight) for linear, _ in self.layers],
            [None if linear.bias is None else _grad_buffer(linear.bias) for linear, _ in self.layers],
        )

        def loss_and_grad(inputs: th.Tensor, targets: th.Tensor) -> float:
            with th.no_grad():
                linearization = linearize(layers, inputs)
                error = linearization[0].squeeze(1) - targets
                batch_size = error.shape[0]
                loss = th.dot(error, error).item() / batch_size
                grad_output = (error * (2.0 / batch_size)).unsqueeze(1)
                jacobian_transpose_vector(layers, linearization, grad_output, out=grads, consume=True)
            return loss

        return loss_and_grad


def _grad_buffer(param: th.Tensor) -> th.Tensor:
    if param.grad is None:
        param.grad = th.empty_like(param)
    return param.grad


def fused_adam_step(optimizer: th.optim.Optimizer) -> Callable[[], None] | None:
    """
    ``optimizer.step()`` of a fused ``torch.optim.Adam``, bit for bit, calling its fused kernel without the per-call
    bookkeeping around it, which dominates for a small network.

    Applies to a plain fused Adam (one parameter group, no amsgrad / maximize / capturable / differentiable /
    decoupled weight decay) whose state exists, and whose ``.grad`` tensors stay the same objects between calls (as
    :class:`MlpRegression` keeps them); otherwise returns None: call ``optimizer.step()``.
    """
    if type(optimizer) is not th.optim.Adam or len(optimizer.param_groups) != 1 or not hasattr(th, "_fused_adam_"):
        return None
    group = optimizer.param_groups[0]
    flags = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")
    if not group.get("fused") or any(group.get(flag) for flag in flags):
        return None
    params = [param for param in group["params"] if param.grad is not None]
    states = [optimizer.state.get(param, {}) for param in params]
    if len(params) != len(group["params"]) or not all({"step", "exp_avg", "exp_avg_sq"} <= state.keys() for state in states):
        return None
    first_step = states[0]["step"]
    if not all(
        isinstance(state["step"], th.Tensor)
        and state["step"].dim() == 0
        and state["step"].dtype == first_step.dtype
        and state["step"].device == first_step.device
        for state in states
    ):
        return None
    # Hyperparameters given as tensors (or bools) are left to optimizer.step(); ints such as the default
    # weight_decay=0 are passed to the kernel as floats, exactly as Adam.step() does
    if not all(_is_real_number(group[key]) for key in ("lr", "eps", "weight_decay")):
        return None
    grads = [param.grad for param in params]
    exp_avgs = [state["exp_avg"] for state in states]
    exp_avg_sqs = [state["exp_avg_sq"] for state in states]
    # The per-parameter step counters, all equal here, become views of one tensor that a single add_ advances (they
    # stay ordinary entries of the optimizer's state for step() and state_dict())
    counter = th.stack([state["step"] for state in states])
    for index, state in enumerate(states):
        state["step"] = counter[index]
    steps = [state["step"] for state in states]
    beta1, beta2 = group["betas"]

    def step() -> None:
        counter.add_(1)
        th._fused_adam_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            lr=float(group["lr"]),
            beta1=float(beta1),
            beta2=float(beta2),
            weight_decay=float(group["weight_decay"]),
            eps=float(group["eps"]),
            amsgrad=False,
            maximize=False,
        )

    return step


def _is_real_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fast_value_regression(policy: nn.Module, critic_params: Sequence[nn.Parameter]) -> MlpRegression | None:
    """
    :class:`MlpRegression` over SB3's value function (``mlp_extractor.value_net`` then ``value_net``) when it is a
    plain MLP made of exactly ``critic_params``; None otherwise (use autograd).
    """
    mlp_extractor = getattr(policy, "mlp_extractor", None)
    value_net = getattr(policy, "value_net", None)
    value_body = getattr(mlp_extractor, "value_net", None)
    if not isinstance(value_body, nn.Module) or not isinstance(value_net, nn.Module):
        return None
    layers = mlp_layers([value_body, value_net])
    if layers is None or layers[-1][1] is not None or layers[-1][0].out_features != 1:
        return None
    regression = MlpRegression(layers)
    if {id(param) for param in regression.parameters} != {id(param) for param in critic_params}:
        return None
    return regression
