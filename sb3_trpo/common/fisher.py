"""
Fast Fisher-vector products in Gauss-Newton form, ``F v = J^T M J v``.

For SB3's action distributions (Gaussian, categorical, Bernoulli: all in the exponential family), the Hessian at
``theta_old`` of the mean ``KL(pi_old || pi_theta)`` is exactly ``F = mean_i J_i^T M_i J_i``:

- ``eta_i(theta)`` are the distribution parameters of sample ``i`` (mean and std, or logits) and
  ``J_i = d eta_i / d theta`` their Jacobian;
- ``M_i`` is the Hessian of ``KL(pi_old || pi_eta)`` in ``eta`` at ``eta_old``, which is the closed-form Fisher
  information of the output distribution. The other term of the chain rule, ``(d KL / d eta) * d^2 eta / d theta^2``,
  vanishes because the KL has its minimum at ``eta_old``.

``J v`` and ``J^T u`` are both backward passes through graphs built once per update (``J v`` by the double-vjp
trick: ``J^T w`` is linear in a dummy ``w``, and its derivative in ``w`` along ``v`` is ``J v``). Forward-mode
alternatives were measured on this machine's MLPs: ``torch.func.linearize`` gives the same per-product cost but its
tracing costs about 50 policy passes per update, and ``torch.func.jvp`` per product is three times slower. Each
product costs about two small backward passes, cheaper than the double-backward reference
(:func:`sb3_trpo.common.natural_gradient.fisher_vector_product`), which stays the reference the tests compare against and
the fallback for distributions not handled here.
"""

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch as th
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sb3_trpo.common.mlp import Layers, affine_layers, jacobian_transpose_vector, jacobian_vector, linearize, mlp_layers
from sb3_trpo.common.natural_gradient import FisherVectorProduct, torch_distributions
from sb3_trpo.common.policies import has_flat_mlp_actor

OutputTensors = tuple[th.Tensor, ...]
OutputFisherProduct = Callable[[OutputTensors], OutputTensors]


# ---------------------------------------------------------------------------------------------------------------------
# Closed-form Fisher information of the output distributions, applied to a tangent of their parameters
# ---------------------------------------------------------------------------------------------------------------------


def normal_fisher_product(scale: th.Tensor, d_loc: th.Tensor, d_scale: th.Tensor) -> OutputTensors:
    """
    Fisher information of independent normals in (mean, std) coordinates, times a tangent.

    :param scale: standard deviations ``sigma``, shape (batch, action_dim)
    :param d_loc: tangent of the means, shape (batch, action_dim)
    :param d_scale: tangent of the standard deviations, shape (batch, action_dim)
    :return: ``(M_mu d_loc, M_sigma d_scale)``, each of shape (batch, action_dim)
    """
    # M = diag(1 / sigma^2, 2 / sigma^2)                                       [Fisher of N(mu, sigma)]
    inverse_variance = scale.pow(-2)
    return d_loc * inverse_variance, 2.0 * d_scale * inverse_variance


def categorical_fisher_product(logits: th.Tensor, d_logits: th.Tensor) -> th.Tensor:
    """
    Fisher information of a categorical distribution in logit coordinates, times a tangent.

    :param logits: logits, shape (batch, n_categories)
    :param d_logits: tangent of the logits, shape (batch, n_categories)
    :return: ``M d_logits``, shape (batch, n_categories)
    """
    return categorical_fisher_product_from_probs(th.softmax(logits, dim=-1), d_logits)


def bernoulli_fisher_product(logits: th.Tensor, d_logits: th.Tensor) -> th.Tensor:
    """
    Fisher information of independent Bernoulli variables in logit coordinates, times a tangent.

    :param logits: logits, shape (batch, n_variables)
    :param d_logits: tangent of the logits, shape (batch, n_variables)
    :return: ``M d_logits``, shape (batch, n_variables)
    """
    # M = diag(p * (1 - p)),  p = sigmoid(logits)                              [Fisher of Bernoulli(logits)]
    probs = th.sigmoid(logits)
    return probs * (1.0 - probs) * d_logits


# ---------------------------------------------------------------------------------------------------------------------
# Distribution parameters eta(theta) of SB3's action distributions
# ---------------------------------------------------------------------------------------------------------------------


_SUPPORTED = (th.distributions.Normal, th.distributions.Categorical, th.distributions.Bernoulli)


def supports_gauss_newton(distribution: Distribution) -> bool:
    """
    Whether :func:`distribution_fisher_vector_product` handles this action distribution exactly.

    Handled: SB3 wrappers whose torch distribution is a ``Normal`` (DiagGaussian, gSDE), a ``Categorical``,
    a list of ``Categorical`` (MultiCategorical) or a ``Bernoulli``; sb3-contrib's maskable distributions (their
    ``MaskableCategorical`` is a ``Categorical`` whose masked logits are -1e8, so its Fisher in the logits is
    ``diag(p) - p p^T`` with ``p = 0`` on the masked actions: they drop out exactly).

    :param distribution: an SB3 action distribution, after ``proba_distribution``
    :return: True when the Gauss-Newton form applies
    """
    inner = torch_distributions(distribution)
    if len(inner) == 1:
        return isinstance(inner[0], _SUPPORTED)
    return all(isinstance(dist, th.distributions.Categorical) for dist in inner)


def distribution_parameters(distribution: Distribution) -> OutputTensors:
    """
    The parameters ``eta`` of an action distribution, in the coordinates whose Fisher is closed-form.

    :param distribution: a distribution accepted by :func:`supports_gauss_newton`
    :return: ``(mean, std)`` for a normal, ``(logits,)`` for a Bernoulli, the logits of each categorical otherwise;
        each of shape (batch, ...)
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
    The map ``u -> M u`` for the distribution parameters ``eta_old`` (summed over independent action dimensions).

    :param distribution: the action distribution, used only for its type
    :param parameters: ``eta_old``, as returned by :func:`distribution_parameters` (detached)
    :return: function from a tangent of ``eta`` to ``M`` times it, same structure
    """
    torch_distribution = torch_distributions(distribution)[0]
    if isinstance(torch_distribution, th.distributions.Normal):
        _, scale = parameters

        def normal_product(tangent: OutputTensors) -> OutputTensors:
            return normal_fisher_product(scale, *tangent)

        return normal_product
    if isinstance(torch_distribution, th.distributions.Bernoulli):

        def bernoulli_product(tangent: OutputTensors) -> OutputTensors:
            return (bernoulli_fisher_product(parameters[0], tangent[0]),)

        return bernoulli_product

    def categorical_product(tangent: OutputTensors) -> OutputTensors:
        pairs = zip(parameters, tangent, strict=True)
        return tuple(categorical_fisher_product(logits, d_logits) for logits, d_logits in pairs)

    return categorical_product


@contextmanager
def separate_action_dist(policy: nn.Module) -> Iterator[None]:
    """
    Within the block, the policy's forward passes write into a copy of its distribution wrapper.

    SB3 policies keep ONE mutable distribution wrapper and overwrite it on each call: evaluating on a copy leaves the
    caller's distribution object (``pi_theta`` of the update) as it was.

    :param policy: the policy
    """
    action_dist = policy.action_dist
    policy.action_dist = copy.copy(action_dist)
    try:
        yield
    finally:
        policy.action_dist = action_dist


def _grad_or_zeros(grads: Sequence[th.Tensor | None], like: Sequence[th.Tensor]) -> list[th.Tensor]:
    return [grad if grad is not None else th.zeros_like(ref) for grad, ref in zip(grads, like, strict=True)]


def distribution_fisher_vector_product(
    distribution: Distribution, params: Sequence[nn.Parameter], damping: float
) -> FisherVectorProduct:
    """
    Damped Fisher-vector product ``v -> (J^T M J / batch + damping * I) v`` for an action distribution computed from
    ``params`` (with its graph): any network, recurrent ones included.

    Builds once (per update) the graph of ``J^T w`` as a function of a dummy ``w`` (linear in ``w``) on the graph of
    the distribution parameters ``eta(theta)``: then ``J v = d (J^T w . v) / d w`` (the double-vjp trick, one backward
    pass) and ``J^T u`` (one backward pass) reuse them at every call.

    :param distribution: ``pi_theta`` on the batch the mean KL is taken over, freshly computed (its graph is kept)
    :param params: the actor parameters ``theta``, in the order of the flat vectors
    :param damping: ``cg_damping``
    :return: ``v -> (F + damping * I) v`` on flat vectors of shape (sum of numels,)
    :raises TypeError: for an action distribution without a closed-form Fisher here
    """
    # F v = (1 / N) sum_i J_i^T M_i J_i v                                  [Gauss-Newton form of the KL Hessian]
    if not supports_gauss_newton(distribution):
        raise TypeError(f"No Gauss-Newton Fisher product for {type(distribution).__name__}: use the double-backward one")
    outputs = distribution_parameters(distribution)
    metric = output_fisher_product(distribution, tuple(output.detach() for output in outputs))
    batch_size = outputs[0].shape[0]
    params = list(params)
    shapes = [param.shape for param in params]
    numels = [param.numel() for param in params]

    # J^T w for a dummy w, with its graph: linear in w, so its derivative in w along v is J v
    differentiable = [output.requires_grad for output in outputs]
    dummies = [th.zeros_like(output, requires_grad=True) for output in outputs]
    graph_outputs = [output for output, used in zip(outputs, differentiable, strict=True) if used]
    graph_dummies = [dummy for dummy, used in zip(dummies, differentiable, strict=True) if used]
    transposed = th.autograd.grad(graph_outputs, params, graph_dummies, create_graph=True, allow_unused=True)
    linked = [index for index, grad in enumerate(transposed) if grad is not None and grad.requires_grad]

    def jacobian_vector(vector: th.Tensor) -> tuple[th.Tensor, ...]:
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
        weighted = [product / batch_size for product in metric(jacobian_vector(vector))]
        grads = th.autograd.grad(
            graph_outputs,
            params,
            [product for product, used in zip(weighted, differentiable, strict=True) if used],
            retain_graph=True,
            allow_unused=True,
        )
        return th.cat([grad.reshape(-1) for grad in _grad_or_zeros(grads, params)]) + damping * vector

    return fvp


# ---------------------------------------------------------------------------------------------------------------------
# Closed form for MLP actors: J v by a tangent forward pass, J^T u by a backward pass, no autograd graph
# ---------------------------------------------------------------------------------------------------------------------


def mlp_fisher_vector_product(
    policy: nn.Module,
    params: Sequence[nn.Parameter],
    observations: PyTorchObs,
    damping: float,
    action_masks: th.Tensor | None = None,
) -> FisherVectorProduct | None:
    """
    The same damped product as :func:`distribution_fisher_vector_product`, in closed form for MLP actors.

    For SB3's actor-critic policies whose actor is a parameter-free features extractor (``FlattenExtractor``, or
    ``CombinedExtractor`` over vector observations; :func:`sb3_trpo.common.policies.has_flat_mlp_actor`), an
    ``mlp_extractor.policy_net`` of linear layers with tanh or ReLU and a linear ``action_net``, with a diagonal
    Gaussian (no gSDE) or categorical action distribution. The activations at ``theta_old`` are computed once; then
    for each product, with ``h_k`` the input of linear layer ``k`` and ``a_k'`` its activation's derivative:

    - ``J v`` by a tangent forward pass: ``dz_k = h_k dW_k^T + db_k + (a_{k-1}' * dz_{k-1}) W_k^T``;
    - ``u = M J v / N`` with ``M`` the closed-form Fisher of the output distribution (of the logits; of the mean,
      ``diag(1 / sigma^2)``);
    - ``J^T u`` by a backward pass: ``dW_k = u_k^T h_k``, ``db_k = sum u_k``, ``u_{k-1} = (u_k W_k) * a_{k-1}'``.

    The block of ``log_std`` is ``2 I``: ``sigma = exp(log_std)`` does not depend on the observation and its Fisher
    in ``sigma`` is ``2 / sigma^2``, so ``J^T M J = sigma * 2 / sigma^2 * sigma = 2`` per dimension, with no cross
    term (the mean does not depend on ``log_std``). Same product as the autograd version up to float rounding
    (``tests/test_fisher.py``), with a handful of tensor operations per layer instead of autograd's graph walks.

    :param policy: the policy
    :param params: the actor parameters ``theta``, in the order of the flat vectors
    :param observations: the batch the mean KL is taken over (already sub-sampled if needed)
    :param damping: ``cg_damping``
    :param action_masks: the samples' action masks (booleans, shape (batch, n_actions)) for sb3-contrib's
        ``MaskableActorCriticPolicy`` classes (same structure, categorical actions): ``M = diag(p) - p p^T`` with
        the probabilities of the masked logits, 0 on the masked actions; None: no masks
    :return: ``v -> (F + damping * I) v`` on flat vectors, or None where the closed form does not apply
    """
    layers = _mlp_actor_layers(policy, observations)
    if layers is None:
        return None
    log_std: th.Tensor | None = None
    if isinstance(policy.action_dist, DiagGaussianDistribution):
        log_std = getattr(policy, "log_std", None)
        if not isinstance(log_std, nn.Parameter):
            return None
    # The flat vectors' pieces, in the order of params: each one a (weight, bias) of a layer, or log_std
    pieces = [linear.weight for linear, _ in layers] + [linear.bias for linear, _ in layers]
    pieces += [] if log_std is None else [log_std]
    if sorted(map(id, params)) != sorted(id(piece) for piece in pieces if piece is not None):
        return None
    order = {id(param): position for position, param in enumerate(params)}
    assert has_flat_mlp_actor(policy, maskable=True)
    affine = affine_layers(layers)
    with th.no_grad():
        # tanh' = 1 - h^2 with two roundings, as the records of the Fisher products were made
        linearization = linearize(affine, actor_features(policy, observations), fused=False)
    metric = _output_metric(linearization[0], log_std, action_masks)
    numels = [param.numel() for param in params]

    def fvp(vector: th.Tensor) -> th.Tensor:
        with th.no_grad():
            chunks = th.split(vector, numels)

            def tangent_of(param: th.Tensor | None) -> th.Tensor | None:
                return None if param is None else chunks[order[id(param)]].view(param.shape)

            tangent_weights = [chunks[order[id(linear.weight)]].view(linear.weight.shape) for linear, _ in layers]
            tangent = jacobian_vector(
                affine, linearization, tangent_weights, [tangent_of(linear.bias) for linear, _ in layers]
            )
            grads_weight, grads_bias = jacobian_transpose_vector(affine, linearization, metric(tangent))
            products: list[th.Tensor] = [th.empty(0)] * len(params)
            for (linear, _), grad_weight, grad_bias in zip(layers, grads_weight, grads_bias, strict=True):
                products[order[id(linear.weight)]] = grad_weight
                if linear.bias is not None and grad_bias is not None:
                    products[order[id(linear.bias)]] = grad_bias
            if log_std is not None:
                # The log_std block of J^T M J / N is 2 I (see above)
                products[order[id(log_std)]] = 2.0 * chunks[order[id(log_std)]]
            return th.cat([product.reshape(-1) for product in products]) + damping * vector

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


def categorical_fisher_product_from_probs(probs: th.Tensor, d_logits: th.Tensor) -> th.Tensor:
    """
    :func:`categorical_fisher_product` with the probabilities already computed.

    :param probs: ``softmax(logits)``, shape (batch, n_categories)
    :param d_logits: tangent of the logits, shape (batch, n_categories)
    :return: ``(diag(p) - p p^T) d_logits``, shape (batch, n_categories)
    """
    # M t = (diag(p) - p p^T) t = p * t - p * (p . t)                         [Fisher of softmax(logits)]
    weighted = probs * d_logits
    return weighted - probs * weighted.sum(dim=-1, keepdim=True)


def actor_features(policy: ActorCriticPolicy, observations: PyTorchObs) -> th.Tensor:
    """
    The actor's input features, for a policy whose actor features extractor has no parameters (constant in theta).

    :param policy: the policy (see :func:`sb3_trpo.common.policies.has_flat_mlp_actor`)
    :param observations: a batch of observations (a tensor, or a dict of tensors)
    :return: features of shape (batch, features_dim): SB3's ``preprocess_obs`` then the features extractor
    """
    with th.no_grad():
        return BaseModel.extract_features(policy, observations, policy.pi_features_extractor)


def _mlp_actor_layers(policy: nn.Module, observations: PyTorchObs) -> Layers | None:
    # The actor as a chain of linear layers (policy_net then action_net), where the closed form applies
    if not has_flat_mlp_actor(policy, maskable=True):
        return None
    return mlp_layers([policy.mlp_extractor.policy_net, policy.action_net])
