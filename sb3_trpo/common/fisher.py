"""
Fisher-vector products in Gauss-Newton form, ``F v = mean_i J_i^T M_i J_i v``: exact for SB3's action distributions
(exponential families), cheaper than the double-backward reference
(:func:`sb3_trpo.common.natural_gradient.fisher_vector_product`), the fallback for any other distribution.

``J_i`` is the Jacobian of sample ``i``'s distribution parameters ``eta_i`` (mean and std, or logits) in ``theta``;
``M_i`` the closed-form Fisher of the output distribution, the Hessian of ``KL(pi_old || pi_eta)`` at ``eta_old``
(the chain rule's other term vanishes at the KL's minimum). Forward mode was measured slower here:
``torch.func.linearize`` traces for about 50 policy passes per update, ``torch.func.jvp`` is three times slower per
product.
"""

from collections.abc import Callable, Sequence

import torch as th
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import BaseModel
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sb3_trpo.common.mlp import affine_layers, jacobian_transpose_vector, jacobian_vector, linearize, mlp_layers
from sb3_trpo.common.natural_gradient import FisherVectorProduct, torch_distributions
from sb3_trpo.common.policies import has_flat_mlp_actor

OutputTensors = tuple[th.Tensor, ...]
OutputFisherProduct = Callable[[OutputTensors], OutputTensors]


def normal_fisher_product(scale: th.Tensor, d_loc: th.Tensor, d_scale: th.Tensor) -> OutputTensors:
    """
    ``M`` times a tangent ``(d_loc, d_scale)`` for independent normals in (mean, std) coordinates:
    ``M = diag(1 / sigma^2, 2 / sigma^2)``.
    """
    inverse_variance = scale.pow(-2)
    return d_loc * inverse_variance, 2.0 * d_scale * inverse_variance


def categorical_fisher_product_from_probs(probs: th.Tensor, d_logits: th.Tensor) -> th.Tensor:
    """``(diag(p) - p p^T) d_logits = p * d_logits - p * (p . d_logits)``: a categorical's Fisher in its logits."""
    weighted = probs * d_logits
    return weighted - probs * weighted.sum(dim=-1, keepdim=True)


def categorical_fisher_product(logits: th.Tensor, d_logits: th.Tensor) -> th.Tensor:
    """:func:`categorical_fisher_product_from_probs` with ``p = softmax(logits)``."""
    return categorical_fisher_product_from_probs(th.softmax(logits, dim=-1), d_logits)


def bernoulli_fisher_product(logits: th.Tensor, d_logits: th.Tensor) -> th.Tensor:
    """``diag(p * (1 - p)) d_logits``, ``p = sigmoid(logits)``: independent Bernoulli variables' Fisher in the logits."""
    probs = th.sigmoid(logits)
    return probs * (1.0 - probs) * d_logits


_SUPPORTED = (th.distributions.Normal, th.distributions.Categorical, th.distributions.Bernoulli)


def supports_gauss_newton(distribution: Distribution) -> bool:
    """
    Whether :func:`distribution_fisher_vector_product` handles this action distribution exactly: a ``Normal``
    (DiagGaussian, gSDE), ``Categorical``, list of ``Categorical`` (MultiCategorical) or ``Bernoulli``, sb3-contrib's
    maskable ones included (their masked logits are -1e8, so ``p = 0`` there and they drop out of ``diag(p) - p p^T``).
    """
    inner = torch_distributions(distribution)
    if len(inner) == 1:
        return isinstance(inner[0], _SUPPORTED)
    return all(isinstance(dist, th.distributions.Categorical) for dist in inner)


def distribution_parameters(distribution: Distribution) -> OutputTensors:
    """
    ``eta``: ``(mean, std)`` of a normal, ``(logits,)`` of a Bernoulli, the logits of each categorical, the coordinates
    whose Fisher is closed-form.
    """
    parameters: list[th.Tensor] = []
    for dist in torch_distributions(distribution):
        if isinstance(dist, th.distributions.Normal):
            parameters += [dist.loc, dist.scale]
        elif isinstance(dist, (th.distributions.Categorical, th.distributions.Bernoulli)):
            parameters.append(dist.logits)
        else:
            raise TypeError(f"No closed-form Fisher for a torch distribution of type {type(dist).__name__}")
    return tuple(parameters)


def output_fisher_product(distribution: Distribution, parameters: OutputTensors) -> OutputFisherProduct:
    """
    The map ``u -> M u`` at ``eta_old``, on tangents structured as ``eta``.

    :param distribution: the action distribution, read only for its type
    :param parameters: ``eta_old`` from :func:`distribution_parameters`, detached
    """
    torch_distribution = torch_distributions(distribution)[0]
    if isinstance(torch_distribution, th.distributions.Normal):
        scale = parameters[1]
        return lambda tangent: normal_fisher_product(scale, *tangent)
    if isinstance(torch_distribution, th.distributions.Bernoulli):
        return lambda tangent: (bernoulli_fisher_product(parameters[0], tangent[0]),)
    return lambda tangent: tuple(
        categorical_fisher_product(logits, d_logits) for logits, d_logits in zip(parameters, tangent, strict=True)
    )


def _grad_or_zeros(grads: Sequence[th.Tensor | None], like: Sequence[th.Tensor]) -> list[th.Tensor]:
    return [grad if grad is not None else th.zeros_like(ref) for grad, ref in zip(grads, like, strict=True)]


def distribution_fisher_vector_product(
    distribution: Distribution, params: Sequence[nn.Parameter], damping: float
) -> FisherVectorProduct:
    """
    ``v -> (J^T M J / batch + damping * I) v`` for an action distribution computed from ``params`` by any network
    (recurrent ones included), through autograd graphs built once per update.

    ``J^T w`` is built with its graph for a dummy ``w``; being linear in ``w``, its derivative in ``w`` along ``v``
    is ``J v`` (the double-vjp trick). Each product is then two backward passes.

    :param distribution: ``pi_theta`` on the batch the mean KL is taken over, with its graph
    :param params: the actor parameters ``theta``, in the order of the flat vectors
    :param damping: ``cg_damping``
    :raises TypeError: where :func:`supports_gauss_newton` says no
    """
    if not supports_gauss_newton(distribution):
        raise TypeError(f"No Gauss-Newton Fisher product for {type(distribution).__name__}: use the double-backward one")
    outputs = distribution_parameters(distribution)
    metric = output_fisher_product(distribution, tuple(output.detach() for output in outputs))
    batch_size = outputs[0].shape[0]
    params = list(params)
    shapes = [param.shape for param in params]
    numels = [param.numel() for param in params]

    differentiable = [output.requires_grad for output in outputs]
    dummies = [th.zeros_like(output, requires_grad=True) for output in outputs]
    graph_outputs = [output for output, used in zip(outputs, differentiable, strict=True) if used]
    graph_dummies = [dummy for dummy, used in zip(dummies, differentiable, strict=True) if used]
    transposed = th.autograd.grad(graph_outputs, params, graph_dummies, create_graph=True, allow_unused=True)
    linked = [index for index, grad in enumerate(transposed) if grad is not None and grad.requires_grad]

    def output_tangent(vector: th.Tensor) -> OutputTensors:
        # J v
        tangents = [chunk.view(shape) for chunk, shape in zip(th.split(vector, numels), shapes, strict=True)]
        products = th.autograd.grad(
            [transposed[index] for index in linked],
            dummies,
            [tangents[index] for index in linked],
            retain_graph=True,
            allow_unused=True,
        )
        return tuple(_grad_or_zeros(products, dummies))

    def fvp(vector: th.Tensor) -> th.Tensor:
        weighted = [product / batch_size for product in metric(output_tangent(vector))]
        grads = th.autograd.grad(
            graph_outputs,
            params,
            [product for product, used in zip(weighted, differentiable, strict=True) if used],
            retain_graph=True,
            allow_unused=True,
        )
        return th.cat([grad.reshape(-1) for grad in _grad_or_zeros(grads, params)]) + damping * vector

    return fvp


def mlp_fisher_vector_product(
    policy: nn.Module,
    params: Sequence[nn.Parameter],
    observations: PyTorchObs,
    damping: float,
    action_masks: th.Tensor | None = None,
) -> FisherVectorProduct | None:
    """
    The product of :func:`distribution_fisher_vector_product` in closed form, without autograd, for the actors of
    :func:`sb3_trpo.common.policies.has_flat_mlp_actor` (linear layers with tanh or ReLU, a diagonal Gaussian without
    gSDE or a categorical): ``J v`` by a tangent forward pass and ``J^T u`` by a backward pass
    (:mod:`sb3_trpo.common.mlp`) around the linearization at ``theta_old``. The ``log_std`` block is ``2 I``
    (``sigma`` does not depend on the observation, and ``sigma * 2 / sigma^2 * sigma = 2``).

    :param policy: the policy
    :param params: the actor parameters ``theta``, in the order of the flat vectors
    :param observations: the batch the mean KL is taken over
    :param damping: ``cg_damping``
    :param action_masks: for sb3-contrib's maskable policies, the samples' action masks (booleans, shape
        (batch, n_actions)); None: no masks
    :return: ``v -> (F + damping * I) v``, or None where the closed form does not apply
    """
    if not has_flat_mlp_actor(policy, maskable=True):
        return None
    layers = mlp_layers([policy.mlp_extractor.policy_net, policy.action_net])
    if layers is None:
        return None
    log_std: th.Tensor | None = None
    if isinstance(policy.action_dist, DiagGaussianDistribution):
        log_std = getattr(policy, "log_std", None)
        if not isinstance(log_std, nn.Parameter):
            return None
    weights = [linear.weight for linear, _ in layers]
    biases = [linear.bias for linear, _ in layers]
    pieces = weights + [bias for bias in biases if bias is not None] + ([] if log_std is None else [log_std])
    if sorted(map(id, params)) != sorted(map(id, pieces)):
        return None
    affine = affine_layers(layers)
    with th.no_grad():
        features = BaseModel.extract_features(policy, observations, policy.pi_features_extractor)
        # tanh' = 1 - h^2 with two roundings, as the records of the Fisher products were made
        linearization = linearize(affine, features, fused=False)
    metric = _output_metric(linearization[0], log_std, action_masks)
    numels = [param.numel() for param in params]

    def fvp(vector: th.Tensor) -> th.Tensor:
        with th.no_grad():
            # The flat vector's pieces by parameter, and the product's
            chunks = {id(param): chunk for param, chunk in zip(params, th.split(vector, numels), strict=True)}
            tangent = jacobian_vector(
                affine,
                linearization,
                [chunks[id(weight)].view(weight.shape) for weight in weights],
                [None if bias is None else chunks[id(bias)].view(bias.shape) for bias in biases],
            )
            grads_weight, grads_bias = jacobian_transpose_vector(affine, linearization, metric(tangent))
            products = {id(weight): grad for weight, grad in zip(weights, grads_weight, strict=True)}
            products.update({id(bias): grad for bias, grad in zip(biases, grads_bias, strict=True) if grad is not None})
            if log_std is not None:
                products[id(log_std)] = 2.0 * chunks[id(log_std)]
            return th.cat([products[id(param)].reshape(-1) for param in params]) + damping * vector

    return fvp


def _output_metric(
    outputs: th.Tensor, log_std: th.Tensor | None, action_masks: th.Tensor | None = None
) -> Callable[[th.Tensor], th.Tensor]:
    # u -> M u / N at theta_old: diag(1 / sigma^2) for the Gaussian mean, diag(p) - p p^T for the logits (masked
    # logits set to -1e8 as sb3-contrib's MaskableCategorical does: their p is exactly 0)
    batch_size = outputs.shape[0]
    with th.no_grad():
        if log_std is not None:
            weight = th.exp(-2.0 * log_std.detach()) / batch_size
            return lambda tangent: tangent * weight
        if action_masks is not None:
            outputs = th.where(action_masks, outputs, th.tensor(-1e8, dtype=outputs.dtype, device=outputs.device))
        probs = th.softmax(outputs, dim=-1)
    return lambda tangent: categorical_fisher_product_from_probs(probs, tangent) / batch_size
