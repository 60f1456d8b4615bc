"""The MLP in closed form (sb3_trpo.common.mlp): the modules' forward bit for bit, and autograd's derivatives."""

import numpy as np
import pytest
import torch as th
from torch import nn

from sb3_trpo.common.mlp import (
    affine_layers,
    jacobian_transpose_vector,
    jacobian_vector,
    linearize,
    mlp_forward,
    mlp_layers,
    numpy_forward,
    numpy_layers,
)


def make_mlp(activation: type[nn.Module], bias: bool) -> nn.Sequential:
    th.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 6, bias=bias), activation(), nn.Linear(6, 5, bias=bias), activation(), nn.Linear(5, 3, bias=bias)
    ).double()


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_is_the_modules_bit_for_bit(activation, bias):
    mlp = make_mlp(activation, bias).float()
    x = th.randn(9, 4)
    layers = mlp_layers([mlp])
    assert layers is not None
    with th.no_grad():
        expected = mlp(x)
        assert th.equal(mlp_forward(affine_layers(layers), x), expected)
        assert th.equal(linearize(affine_layers(layers), x)[0], expected)
    assert np.allclose(numpy_forward(numpy_layers(layers), x.numpy()), expected.numpy(), atol=1e-6)


def test_an_empty_chain_is_the_identity():
    # SB3's net_arch=[]: an empty latent net before the action head reads as the head alone
    head = nn.Linear(3, 2)
    assert mlp_layers([nn.Sequential(), head]) == [(head, None)]
    assert mlp_layers([nn.Sequential()]) is None


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_jacobian_products_are_autograds(activation, bias, fused):
    mlp = make_mlp(activation, bias)
    layers = mlp_layers([mlp])
    assert layers is not None
    params = [param for linear, _ in layers for param in (linear.weight, linear.bias) if param is not None]
    x = th.randn(7, 4, dtype=th.float64)
    affine = affine_layers(layers)
    with th.no_grad():
        linearization = linearize(affine, x, fused=fused)
    tangents = {param: th.randn_like(param) for param in params}

    # J v against the forward-mode derivative of the module
    def output(*values: th.Tensor) -> th.Tensor:
        names = [name for name, _ in mlp.named_parameters()]
        return th.func.functional_call(mlp, dict(zip(names, values, strict=True)), (x,))

    _, expected_jv = th.func.jvp(output, tuple(params), tuple(tangents[param] for param in params))
    jv = jacobian_vector(
        affine,
        linearization,
        [tangents[linear.weight] for linear, _ in layers],
        [None if linear.bias is None else tangents[linear.bias] for linear, _ in layers],
    )
    assert th.allclose(jv, expected_jv, rtol=1e-10, atol=1e-12)

    # J^T u against autograd's backward
    u = th.randn(7, 3, dtype=th.float64)
    expected = th.autograd.grad(mlp(x), params, u)
    grads_weight, grads_bias = jacobian_transpose_vector(affine, linearization, u)
    grads = [grad for pair in zip(grads_weight, grads_bias, strict=True) for grad in pair if grad is not None]
    for grad, expected_grad in zip(grads, expected, strict=True):
        assert th.allclose(grad, expected_grad, rtol=1e-10, atol=1e-12)
