"""
Fast gradients for the critic's regression when the value function is a plain MLP.

TRPO fits the critic with many small Adam steps (the RL Zoo's MuJoCo settings: 20 epochs x 16 minibatches per
update). For networks this small every step is dominated by per-operation overhead, most of it autograd's graph
bookkeeping. For the value function SB3 builds by default, ``Linear -> activation -> ... -> Linear``, the gradient of
the mean squared error has a short closed form; :class:`MlpRegression` computes it with plain tensor operations
(written into preallocated ``.grad`` tensors) so that the optimizer's step can follow as usual. It is the same
gradient as autograd's up to float rounding, which ``tests/test_critic.py`` checks.
"""

from collections.abc import Callable, Sequence

import torch as th
from torch import nn

from sb3_trpo.common.mlp import Layers, affine_layers, jacobian_transpose_vector, linearize, mlp_layers


class MlpRegression:
    """
    Mean squared error of an MLP ``v = f(x)`` against targets, and its gradient with respect to every weight.

    :param layers: ``(linear, activation or None)`` pairs from :func:`mlp_layers`; the last layer has one output
    """

    def __init__(self, layers: Layers) -> None:
        if layers[-1][0].out_features != 1 or layers[-1][1] is not None:
            raise ValueError("The last layer must be a linear layer with one output (a value) and no activation")
        self.layers = layers
        self.parameters: list[th.Tensor] = []
        for linear, _ in layers:
            self.parameters.append(linear.weight)
            if linear.bias is not None:
                self.parameters.append(linear.bias)

    def bind(self) -> Callable[[th.Tensor, th.Tensor], float]:
        """
        The loss and its gradient with the weights, gradient buffers and activations looked up once.

        For the small batches TRPO's critic sees, Python-side lookups (module attributes, module calls) cost as much
        as the arithmetic, so a caller that makes many steps (``TRPO._fit_critic``, once per update) binds once. The
        bound function stays valid while the parameters are updated in place (by an optimizer,
        ``load_state_dict``); bind again after anything replaces them.

        :return: a function ``(inputs, targets) -> loss``: the forward pass, the loss ``mean((targets - v)^2)`` as a
            Python float (NaN or inf when the minibatch is not finite), and its gradient written into each
            parameter's ``.grad``; inputs of shape (batch, in_features), targets of shape (batch,)
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
                # d loss / d v = 2 (v - y) / batch                             [mean squared error]
                grad_output = (error * (2.0 / batch_size)).unsqueeze(1)
                jacobian_transpose_vector(layers, linearization, grad_output, out=grads, consume=True)
            return loss

        return loss_and_grad


def _grad_buffer(param: th.Tensor) -> th.Tensor:
    # The gradient is written in place into the parameter's .grad (allocated once)
    if param.grad is None:
        param.grad = th.empty_like(param)
    return param.grad


def fused_adam_step(optimizer: th.optim.Optimizer) -> Callable[[], None] | None:
    """
    ``optimizer.step()`` of a fused ``torch.optim.Adam`` without the Python wrapper around the fused kernel.

    ``Adam.step`` spends most of its time (for a small network) in per-call bookkeeping before it reaches the one
    fused kernel. When the optimizer is a plain fused Adam (one parameter group, no amsgrad / maximize / capturable /
    differentiable / decoupled weight decay) whose state already exists, the returned callable increments the step
    counters and calls the same kernel with the same arguments, so the update is bit for bit the one
    ``optimizer.step()`` makes. The parameters' ``.grad`` tensors must stay the same objects between calls (they
    are gathered once), as :class:`MlpRegression` guarantees. The per-parameter step counters become views of one
    tensor, advanced by one ``add_``.

    :param optimizer: the critic's optimizer
    :return: the step function, or None when the shortcut does not apply (then call ``optimizer.step()``)
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
    # Adam keeps one step counter per parameter, all equal here: make them views of one tensor so that a single
    # add_ advances them all (they stay ordinary entries of the optimizer's state for step() and state_dict())
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
    plain MLP made of exactly the critic's parameters; None otherwise (use autograd).

    :param policy: an SB3 ``ActorCriticPolicy``
    :param critic_params: the parameters the critic's optimizer trains
    :return: the regression, or None
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
