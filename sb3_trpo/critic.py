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

#: Activations whose derivative is a cheap function of their OUTPUT h: tanh' = 1 - h^2, relu' = 1[h > 0]
SUPPORTED_ACTIVATIONS = (nn.Tanh, nn.ReLU)


def mlp_layers(modules: Sequence[nn.Module]) -> list[tuple[nn.Linear, nn.Module | None]] | None:
    """
    Read a chain of modules as ``(linear, activation or None)`` pairs, or return None if it is not such a chain.

    Nested ``nn.Sequential`` containers are flattened; ``nn.Identity`` is skipped; the chain must alternate
    ``nn.Linear`` and at most one supported activation (tanh, relu) after each linear layer.

    :param modules: the modules in the order they are applied
    :return: the layers, or None when some module is not a linear layer or a supported activation
    """
    flat: list[nn.Module] = []
    for module in modules:
        if isinstance(module, nn.Sequential):
            flat.extend(module)
        elif not isinstance(module, nn.Identity):
            flat.append(module)
    layers: list[tuple[nn.Linear, nn.Module | None]] = []
    for module in flat:
        if type(module) is nn.Linear:
            layers.append((module, None))
        elif isinstance(module, SUPPORTED_ACTIVATIONS) and layers and layers[-1][1] is None:
            layers[-1] = (layers[-1][0], module)
        else:
            return None
    return layers or None


class MlpRegression:
    """
    Mean squared error of an MLP ``v = f(x)`` against targets, and its gradient with respect to every weight.

    :param layers: ``(linear, activation or None)`` pairs from :func:`mlp_layers`; the last layer has one output
    """

    def __init__(self, layers: list[tuple[nn.Linear, nn.Module | None]]) -> None:
        if layers[-1][0].out_features != 1 or layers[-1][1] is not None:
            raise ValueError("The last layer must be a linear layer with one output (a value) and no activation")
        self.layers = layers
        self.parameters: list[th.Tensor] = []
        for linear, _ in layers:
            self.parameters.append(linear.weight)
            if linear.bias is not None:
                self.parameters.append(linear.bias)

    def loss_and_grad(self, inputs: th.Tensor, targets: th.Tensor) -> th.Tensor:
        """
        Forward pass, loss, and the loss's gradient written into each parameter's ``.grad``.

        :param inputs: shape (batch, in_features)
        :param targets: shape (batch,)
        :return: the loss ``mean((targets - v)^2)``, a 0-d tensor
        """
        with th.no_grad():
            # Forward, keeping each layer's input and its post-activation output
            layer_inputs = []
            hidden = inputs
            for linear, activation in self.layers:
                layer_inputs.append(hidden)
                hidden = (
                    th.addmm(linear.bias, hidden, linear.weight.t()) if linear.bias is not None else hidden @ linear.weight.t()
                )
                if activation is not None:
                    hidden = activation(hidden)
            values = hidden.squeeze(1)
            error = values - targets
            loss = th.mean(error * error)

            # Backward: d loss / d v = 2 (v - y) / batch                       [mean squared error]
            grad_output = (error * (2.0 / error.shape[0])).unsqueeze(1)
            for index in range(len(self.layers) - 1, -1, -1):
                linear, activation = self.layers[index]
                if activation is not None:
                    # Only hidden layers have an activation: its output is the next layer's input
                    grad_output = grad_output * _activation_derivative(activation, layer_inputs[index + 1])
                th.mm(grad_output.t(), layer_inputs[index], out=_grad_buffer(linear.weight))
                if linear.bias is not None:
                    th.sum(grad_output, dim=0, out=_grad_buffer(linear.bias))
                if index > 0:
                    grad_output = grad_output @ linear.weight
        return loss


def _activation_derivative(activation: nn.Module, output: th.Tensor) -> th.Tensor:
    # tanh'(z) = 1 - tanh(z)^2 ; relu'(z) = 1[relu(z) > 0]
    if isinstance(activation, nn.Tanh):
        return 1.0 - output * output
    return (output > 0).to(output.dtype)


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
    are gathered once), as :class:`MlpRegression` guarantees.

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
    if not all(isinstance(group[key], float) for key in ("lr", "eps", "weight_decay")):
        return None
    grads = [param.grad for param in params]
    exp_avgs = [state["exp_avg"] for state in states]
    exp_avg_sqs = [state["exp_avg_sq"] for state in states]
    steps = [state["step"] for state in states]
    beta1, beta2 = group["betas"]

    def step() -> None:
        th._foreach_add_(steps, 1)
        th._fused_adam_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            lr=group["lr"],
            beta1=float(beta1),
            beta2=float(beta2),
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
        )

    return step


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
