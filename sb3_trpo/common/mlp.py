"""
The MLPs of SB3's policies in closed form, for the rollout, the critic's regression and the Fisher products: for
networks this small a module call costs more than its arithmetic.

An MLP is read once as its layers ``z_k = h_k W_k^T + b_k``, ``h_{k+1} = a_k(z_k)``; each pass is a few tensor
operations per layer, the kernels of ``nn.Linear`` (``addmm(b, h, W^T)``) and of autograd's backward, so the results
are bit for bit the modules' and autograd's (``tests/test_critic.py``, ``test_fisher.py``, ``test_rollout.py``).
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch as th
from torch import nn
from torch.nn import functional as F

#: ``(linear, activation or None)`` for each linear layer of a chain, in the order they are applied
Layers = list[tuple[nn.Linear, nn.Module | None]]
#: ``(W^T, bias or None, activation or None)`` for each linear layer: a chain bound to tensors
AffineLayers = list[tuple[th.Tensor, th.Tensor | None, Callable[[th.Tensor], th.Tensor] | None]]
#: :data:`AffineLayers` as NumPy arrays, with in-place activations
NumpyLayers = list[tuple[np.ndarray, np.ndarray | None, Callable[[np.ndarray], np.ndarray] | None]]
#: the result of :func:`linearize`: the output, each layer's input ``h_k`` and ``a_k'(z_k)`` (None: no activation)
Linearization = tuple[th.Tensor, list[th.Tensor], list[th.Tensor | None]]

ACTIVATIONS: dict[type[nn.Module], Callable[[th.Tensor], th.Tensor]] = {nn.Tanh: th.tanh, nn.ReLU: th.relu}


def mlp_layers(modules: Sequence[nn.Module]) -> Layers | None:
    """
    Read modules (in the order they are applied; ``nn.Sequential`` flattened, ``nn.Identity`` skipped) as
    ``(linear, activation or None)`` pairs; None unless each ``nn.Linear`` is followed by at most one tanh or ReLU.
    """
    flat: list[nn.Module] = []
    for module in modules:
        if isinstance(module, nn.Sequential):
            flat.extend(module)
        elif not isinstance(module, nn.Identity):
            flat.append(module)
    layers: Layers = []
    for module in flat:
        if type(module) is nn.Linear:
            layers.append((module, None))
        elif type(module) in ACTIVATIONS and layers and layers[-1][1] is None:
            layers[-1] = (layers[-1][0], module)
        else:
            return None
    return layers or None


def affine_layers(layers: Layers, detach: bool = True) -> AffineLayers:
    """
    The layers bound to their tensors, ``(W^T, bias or None, activation or None)``: valid while the weights change in
    place (an optimizer, ``load_state_dict``); bind again after anything replaces them.

    :param detach: bind detached views (outside autograd) rather than the parameters themselves
    """
    return [
        (
            (linear.weight.detach() if detach else linear.weight).t(),
            None if linear.bias is None else (linear.bias.detach() if detach else linear.bias),
            None if activation is None else ACTIVATIONS[type(activation)],
        )
        for linear, activation in layers
    ]


def mlp_forward(layers: AffineLayers, inputs: th.Tensor) -> th.Tensor:
    """``h_{k+1} = a_k(h_k W_k^T + b_k)``: the modules' forward pass, bit for bit, on inputs of shape (batch, in)."""
    hidden = inputs
    for weight_t, bias, activation in layers:
        hidden = th.mm(hidden, weight_t) if bias is None else th.addmm(bias, hidden, weight_t)
        if activation is not None:
            hidden = activation(hidden)
    return hidden


def activation_derivative(activation: Callable[[th.Tensor], th.Tensor], output: th.Tensor, fused: bool = True) -> th.Tensor:
    """
    ``a'(z)`` from the output ``h = a(z)``: ``1 - h^2`` for tanh, ``1[h > 0]`` for ReLU.

    :param fused: for tanh, compute ``1 - h^2`` with one rounding (a fused multiply-add, as autograd's
        ``tanh_backward``: the critic's gradients are then autograd's bit for bit) or two (``h * h``, then ``1 -``: the
        Fisher products, whose records were made so)
    """
    if activation is th.relu:
        # sign(h) = 1[h > 0] since h = relu(z) >= 0
        return output.sign()
    if fused:
        return th.addcmul(output.new_ones(()), output, output, value=-1.0)
    return 1.0 - output * output


def linearize(layers: AffineLayers, inputs: th.Tensor, fused: bool = True) -> Linearization:
    """
    The forward pass, keeping each layer's input ``h_k`` and activation derivative ``a_k'`` for the derivatives.

    :param fused: the rounding of tanh's derivative (:func:`activation_derivative`)
    """
    layer_inputs: list[th.Tensor] = []
    derivatives: list[th.Tensor | None] = []
    hidden = inputs
    for weight_t, bias, activation in layers:
        layer_inputs.append(hidden)
        hidden = th.mm(hidden, weight_t) if bias is None else th.addmm(bias, hidden, weight_t)
        if activation is not None:
            hidden = activation(hidden)
        derivatives.append(None if activation is None else activation_derivative(activation, hidden, fused))
    return hidden, layer_inputs, derivatives


def jacobian_vector(
    layers: AffineLayers,
    linearization: Linearization,
    tangent_weights: Sequence[th.Tensor],
    tangent_biases: Sequence[th.Tensor | None],
) -> th.Tensor:
    """
    ``J v``, the output's derivative along a tangent ``v = (dW_k, db_k)`` of the weights (``db_k`` None where a layer
    has no bias), by a tangent forward pass: ``dz_k = h_k dW_k^T + db_k + dh_k W_k^T``, ``dh_{k+1} = a_k' * dz_k``.
    """
    _, layer_inputs, derivatives = linearization
    tangent = th.empty(0)
    for index, (tangent_weight, tangent_bias) in enumerate(zip(tangent_weights, tangent_biases, strict=True)):
        change = F.linear(layer_inputs[index], tangent_weight, tangent_bias)
        if index > 0:
            change = th.addmm(change, tangent, layers[index][0])
        derivative = derivatives[index]
        tangent = change if derivative is None else change * derivative
    return tangent


def jacobian_transpose_vector(
    layers: AffineLayers,
    linearization: Linearization,
    grad_output: th.Tensor,
    out: tuple[Sequence[th.Tensor], Sequence[th.Tensor | None]] | None = None,
    consume: bool = False,
) -> tuple[list[th.Tensor], list[th.Tensor | None]]:
    """
    ``J^T u``, the backward pass of an output gradient ``u`` to the weights: ``u_k = u_{k+1} W_{k+1} * a_k'``,
    ``dW_k = u_k^T h_k``, ``db_k = sum_i u_k``.

    :param out: tensors to write the gradients into (``.grad`` tensors), structured as the result; None: new ones
    :param consume: the linearization serves this pass only: its derivatives are multiplied in place (one allocation
        fewer per layer, for the critic's many small steps)
    :return: the weights' and the biases' gradients (None where a layer has no bias)
    """
    _, layer_inputs, derivatives = linearization
    grads_weight: list[Any] = [None] * len(layers)
    grads_bias: list[th.Tensor | None] = [None] * len(layers)
    for index in range(len(layers) - 1, -1, -1):
        weight_t, bias, _ = layers[index]
        derivative = derivatives[index]
        if derivative is not None:
            grad_output = derivative.mul_(grad_output) if consume else grad_output * derivative
        if out is None:
            grads_weight[index] = th.mm(grad_output.t(), layer_inputs[index])
            grads_bias[index] = None if bias is None else th.sum(grad_output, dim=0)
        else:
            grads_weight[index] = th.mm(grad_output.t(), layer_inputs[index], out=out[0][index])
            bias_out = out[1][index]
            grads_bias[index] = None if bias_out is None else th.sum(grad_output, dim=0, out=bias_out)
        if index > 0:
            # u W as F.linear(u, W^T): the product autograd computes
            grad_output = F.linear(grad_output, weight_t)
    return grads_weight, grads_bias


#: In-place activations for the NumPy forward pass (the rollout of small MLPs on the CPU)
NUMPY_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: lambda hidden: np.tanh(hidden, out=hidden),
    nn.ReLU: lambda hidden: np.maximum(hidden, 0.0, out=hidden),
}


def numpy_layers(layers: Layers) -> NumpyLayers:
    """:func:`affine_layers` as NumPy copies of the weights (CPU tensors only): valid until the weights change."""
    # Contiguous copies of W^T: a product with a contiguous matrix is about twice as fast as with a transposed view
    return [
        (
            np.ascontiguousarray(linear.weight.detach().numpy().T),
            None if linear.bias is None else linear.bias.detach().numpy().copy(),
            None if activation is None else NUMPY_ACTIVATIONS[type(activation)],
        )
        for linear, activation in layers
    ]


def numpy_forward(layers: NumpyLayers, inputs: np.ndarray) -> np.ndarray:
    """:func:`mlp_forward` in NumPy: the same values to float32 rounding (the sums' order is NumPy's BLAS's)."""
    hidden = inputs
    for weight_t, bias, activation in layers:
        hidden = np.dot(hidden, weight_t)
        if bias is not None:
            hidden += bias
        if activation is not None:
            activation(hidden)
    return hidden
