"""
The MLPs of SB3's policies in closed form: one reader of their layers, and the forward pass, the backward pass and the
Jacobian-vector products that the rollout (:mod:`sb3_trpo.common.rollout`), the critic's regression
(:mod:`sb3_trpo.common.critic`) and the Fisher products (:mod:`sb3_trpo.common.fisher`) need.

For the small networks TRPO is used with, each call of a module or a distribution object costs more than its
arithmetic. An MLP is read once as its layers ``z_k = h_k W_k^T + b_k``, ``h_{k+1} = a_k(z_k)``, and each pass is a
handful of tensor operations per layer: the same kernels as ``nn.Linear`` (``addmm(b, h, W^T)`` on 2-d inputs) and
as autograd's backward of the activations, so the results are bit for bit those of the modules and of autograd
(``tests/test_critic.py``, ``tests/test_fisher.py``, ``tests/test_rollout.py``).
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
#: the result of :func:`linearize`: the output, the input ``h_k`` of each layer, and ``a_k'(z_k)`` (None: no
#: activation after layer ``k``)
Linearization = tuple[th.Tensor, list[th.Tensor], list[th.Tensor | None]]

#: The supported activations and their functions
ACTIVATIONS: dict[type[nn.Module], Callable[[th.Tensor], th.Tensor]] = {nn.Tanh: th.tanh, nn.ReLU: th.relu}


def mlp_layers(modules: Sequence[nn.Module]) -> Layers | None:
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
    layers: Layers = []
    for module in flat:
        if type(module) is nn.Linear:
            layers.append((module, None))
        elif type(module) in ACTIVATIONS and layers and layers[-1][1] is None:
            layers[-1] = (layers[-1][0], module)
        else:
            return None
    return layers or None


def chain_layers(chain: nn.Module) -> Layers | None:
    """
    :func:`mlp_layers` of one module, where an empty ``nn.Sequential`` (SB3's ``net_arch=[]``) is the identity.

    :param chain: a module of SB3's ``MlpExtractor`` (``policy_net``, ``value_net``) or a head (``action_net``)
    :return: the layers (none for the identity), or None when it is not an MLP
    """
    if isinstance(chain, nn.Sequential) and len(chain) == 0:
        return []
    return mlp_layers([chain])


def affine_layers(layers: Layers, detach: bool = True) -> AffineLayers:
    """
    The layers bound to their tensors: valid while the weights are changed in place (an optimizer,
    ``load_state_dict``); bind again after anything replaces them.

    :param layers: from :func:`mlp_layers`
    :param detach: whether to bind detached views (outside autograd) or the parameters themselves
    :return: ``(W^T, bias or None, activation function or None)`` for each layer
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
    """
    ``h_{k+1} = a_k(h_k W_k^T + b_k)``: the modules' forward pass, bit for bit.

    :param layers: from :func:`affine_layers`
    :param inputs: shape (batch, in_features)
    :return: the outputs, shape (batch, out_features)
    """
    # nn.Linear computes addmm(bias, x, W^T) for 2-d inputs: the same kernel, the same result
    hidden = inputs
    for weight_t, bias, activation in layers:
        hidden = th.mm(hidden, weight_t) if bias is None else th.addmm(bias, hidden, weight_t)
        if activation is not None:
            hidden = activation(hidden)
    return hidden


def activation_derivative(activation: Callable[[th.Tensor], th.Tensor], output: th.Tensor, fused: bool = True) -> th.Tensor:
    """
    ``a'(z)`` from the activation's output ``h = a(z)``.

    :param activation: ``th.tanh`` or ``th.relu``
    :param output: ``h``
    :param fused: for tanh, whether ``1 - h^2`` is computed with one rounding (a fused multiply-add, as autograd's
        ``tanh_backward`` does: the critic's gradients are then bit for bit autograd's) or two (``h * h``, then
        ``1 - ``: the Fisher products, whose records were made so)
    :return: ``1 - h^2`` for tanh, ``1[h > 0]`` for ReLU
    """
    if activation is th.relu:
        # relu'(z) = 1[h > 0] = sign(h), as h = relu(z) >= 0: the same values as autograd's threshold_backward
        return output.sign()
    if fused:
        # tanh'(z) = 1 - h^2, h^2 subtracted by addcmul (one fused multiply-add) as autograd's tanh_backward does
        return th.addcmul(output.new_ones(()), output, output, value=-1.0)
    return 1.0 - output * output


def linearize(layers: AffineLayers, inputs: th.Tensor, fused: bool = True) -> Linearization:
    """
    The forward pass, keeping what the derivatives in the weights need.

    :param layers: from :func:`affine_layers`
    :param inputs: shape (batch, in_features)
    :param fused: the rounding of tanh's derivative (:func:`activation_derivative`)
    :return: the outputs, the input ``h_k`` of each layer, and the derivative ``a_k'`` of each layer's activation
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
    ``J v``: the derivative of the output along a tangent ``v = (dW_k, db_k)`` of the weights, by a tangent forward
    pass.

    :param layers: from :func:`affine_layers`
    :param linearization: from :func:`linearize`
    :param tangent_weights: ``dW_k``, shaped as ``W_k``
    :param tangent_biases: ``db_k``, or None where the layer has no bias
    :return: the output's tangent, shape (batch, out_features)
    """
    # dz_k = h_k dW_k^T + db_k + dh_k W_k^T, dh_{k+1} = a_k' * dz_k               [tangent forward pass]
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
    ``J^T u``: the backward pass of a gradient ``u`` of the output to the weights.

    :param layers: from :func:`affine_layers`
    :param linearization: from :func:`linearize`
    :param grad_output: ``u``, shape (batch, out_features)
    :param out: tensors to write the gradients into (``.grad`` tensors), as the result's structure; None: new ones
    :param consume: whether the linearization serves this one pass only: its derivatives are then multiplied in place
        (one allocation fewer per layer, for the critic's many small steps); False keeps it for more products
    :return: the gradients of the weights and of the biases (None where a layer has no bias), one per layer
    """
    # u_k = u_{k+1} W_{k+1} * a_k', dW_k = u_k^T h_k, db_k = sum_i u_k            [backward pass]
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
            # u W: F.linear(u, W^T) multiplies by (W^T)^T = W itself, the same product as autograd's
            grad_output = F.linear(grad_output, weight_t)
    return grads_weight, grads_bias


# ---------------------------------------------------------------------------------------------------------------------
# The forward pass in NumPy, for the rollout of small MLPs on the CPU
# ---------------------------------------------------------------------------------------------------------------------


def _tanh_inplace(hidden: np.ndarray) -> np.ndarray:
    return np.tanh(hidden, out=hidden)


def _relu_inplace(hidden: np.ndarray) -> np.ndarray:
    return np.maximum(hidden, 0.0, out=hidden)


NUMPY_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: _tanh_inplace,
    nn.ReLU: _relu_inplace,
}


def numpy_layers(layers: Layers) -> NumpyLayers:
    """
    :func:`affine_layers` as NumPy copies of the weights (CPU tensors only): valid until the weights change.

    :param layers: from :func:`mlp_layers`
    :return: ``(W^T, bias or None, in-place activation or None)`` for each layer
    """
    # Contiguous copies of W^T (a product with a contiguous matrix is about twice as fast as with a transposed view)
    return [
        (
            np.ascontiguousarray(linear.weight.detach().numpy().T),
            None if linear.bias is None else linear.bias.detach().numpy().copy(),
            None if activation is None else NUMPY_ACTIVATIONS[type(activation)],
        )
        for linear, activation in layers
    ]


def numpy_forward(layers: NumpyLayers, inputs: np.ndarray) -> np.ndarray:
    """
    :func:`mlp_forward` in NumPy: the same values to float32 rounding (the products' summation order is NumPy's BLAS's).

    :param layers: from :func:`numpy_layers`
    :param inputs: shape (batch, in_features), float32
    :return: the outputs, shape (batch, out_features)
    """
    hidden = inputs
    for weight_t, bias, activation in layers:
        hidden = np.dot(hidden, weight_t)
        if bias is not None:
            hidden += bias
        if activation is not None:
            activation(hidden)
    return hidden
