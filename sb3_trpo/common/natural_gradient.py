"""
The natural-gradient step of TRPO as small pure functions.

Nothing here reads an algorithm's attributes: every function takes tensors, parameters and callables, so each
can be checked on its own against a dense reference (``th.linalg.solve``, an explicit Hessian, a quadratic).

Notation follows the TRPO paper (Schulman et al., 2015, https://arxiv.org/abs/1502.05477):
``theta`` the actor parameters, ``L(theta)`` the surrogate objective, ``g`` its gradient at ``theta_old``,
``F`` the Fisher information matrix (the Hessian of the mean ``KL(pi_old || pi_theta)`` at ``theta_old``),
``delta`` the trust-region radius (``target_kl``).
"""

import copy
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import (
    MaskableBernoulliDistribution,
    MaskableCategorical,
    MaskableDistribution,
)
from stable_baselines3.common.distributions import Distribution, kl_divergence
from torch import nn

FisherVectorProduct = Callable[[th.Tensor], th.Tensor]


class CGResult(NamedTuple):
    """
    Outcome of :func:`conjugate_gradient`.

    :param x: approximate solution of ``A x = b``, shape (n,)
    :param n_iter: number of matrix-vector products used inside the loop
    :param residual_norm: ``||b - A x||`` as tracked by the recurrence (a 0-d tensor)
    :param converged: whether the residual fell below the tolerance before ``max_iter``
    :param residual: ``r = b - A x`` as tracked by the recurrence, shape (n,); ``b - r`` is ``A x`` without
        another product
    """

    x: th.Tensor
    n_iter: int
    residual_norm: th.Tensor
    converged: bool
    residual: th.Tensor


class LineSearchResult(NamedTuple):
    """
    Outcome of :func:`backtracking_line_search`.

    :param accepted: whether a candidate passed both the KL and the improvement test
    :param fraction: the accepted fraction ``shrink**j`` of the full step (0.0 when nothing was accepted)
    :param n_backtracks: how many candidates were rejected before the accepted one
        (``max_iter`` when nothing was accepted)
    :param kl: ``KL(pi_old || pi_theta)`` at the accepted candidate (0.0 when nothing was accepted)
    :param surrogate: ``L(theta)`` at the accepted candidate (``old_surrogate`` when nothing was accepted)
    """

    accepted: bool
    fraction: float
    n_backtracks: int
    kl: float
    surrogate: float


# ---------------------------------------------------------------------------------------------------------------------
# Flat-parameter helpers
# ---------------------------------------------------------------------------------------------------------------------


def get_flat_params(params: Sequence[nn.Parameter]) -> th.Tensor:
    """
    Concatenate parameters into one detached vector (a copy).

    :param params: the parameters, in a fixed order
    :return: flat vector of shape (sum of numels,)
    """
    return th.nn.utils.parameters_to_vector(params).detach().clone()


def set_flat_params(params: Sequence[nn.Parameter], flat: th.Tensor) -> None:
    """
    Write a flat vector back into the parameters, in place and bit for bit.

    :param params: the parameters, in the order used by :func:`get_flat_params`
    :param flat: vector of shape (sum of numels,)
    """
    n_total = sum(param.numel() for param in params)
    if flat.numel() != n_total:
        raise ValueError(f"`flat` has {flat.numel()} elements but the parameters have {n_total}")
    offset = 0
    with th.no_grad():
        for param in params:
            n_elements = param.numel()
            param.copy_(flat[offset : offset + n_elements].view_as(param))
            offset += n_elements


def flat_grad(
    output: th.Tensor,
    params: Sequence[nn.Parameter],
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> th.Tensor:
    """
    Gradient of a scalar with respect to all ``params`` in ONE autograd call, flattened.

    Parameters that do not influence ``output`` get a zero gradient.

    :param output: scalar tensor
    :param params: the parameters to differentiate with respect to
    :param create_graph: keep the graph of the gradient itself (for second derivatives)
    :param retain_graph: keep the graph of ``output`` for further calls (defaults to ``create_graph``)
    :return: flat gradient of shape (sum of numels,)
    """
    grads = th.autograd.grad(output, list(params), create_graph=create_graph, retain_graph=retain_graph, allow_unused=True)
    return th.cat(
        [(grad if grad is not None else th.zeros_like(param)).reshape(-1) for grad, param in zip(grads, params, strict=True)]
    )


# ---------------------------------------------------------------------------------------------------------------------
# Surrogate objective and KL
# ---------------------------------------------------------------------------------------------------------------------


def normalize_advantages(advantages: th.Tensor, eps: float = 1e-8) -> th.Tensor:
    """
    Shift and scale advantages to zero mean and unit standard deviation.

    A batch of one sample has no spread: it is only centered (the std of one sample is NaN).

    :param advantages: shape (batch,)
    :param eps: added to the std to avoid a division by zero
    :return: normalized advantages, shape (batch,)
    """
    # A_norm = (A - mean(A)) / (std(A) + eps)
    if advantages.numel() < 2:
        return advantages - advantages.mean()
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def surrogate_objective(log_prob: th.Tensor, old_log_prob: th.Tensor, advantages: th.Tensor) -> th.Tensor:
    """
    TRPO's surrogate objective (importance-sampled advantage).

    At ``theta = theta_old`` its value is ``mean(A)`` and its gradient is the policy gradient ``g``.

    :param log_prob: ``log pi_theta(a|s)``, shape (batch,)
    :param old_log_prob: ``log pi_old(a|s)``, detached, shape (batch,)
    :param advantages: ``A(s, a)``, shape (batch,)
    :return: scalar ``L(theta)``
    """
    # L(theta) = mean(exp(log_pi - log_pi_old) * A)                               [TRPO paper, Sec. 5]
    return (th.exp(log_prob - old_log_prob) * advantages).mean()


def entropy_regularized_surrogate(
    log_prob: th.Tensor,
    old_log_prob: th.Tensor,
    advantages: th.Tensor,
    entropy: th.Tensor | None,
    ent_coef: float,
) -> th.Tensor:
    """
    The surrogate objective with an entropy bonus, the objective of TRPO's and NPG's ``ent_coef`` option.

    With ``ent_coef == 0`` (or no entropy given) it is :func:`surrogate_objective` itself, the same tensor operations.

    :param log_prob: ``log pi_theta(a|s)``, shape (batch,)
    :param old_log_prob: ``log pi_old(a|s)``, detached, shape (batch,)
    :param advantages: ``A(s, a)``, shape (batch,)
    :param entropy: ``H(pi_theta(.|s))`` of the joint action distribution per sample, shape (batch,), or None
    :param ent_coef: the bonus's coefficient ``c`` (>= 0)
    :return: scalar ``L(theta) + c * mean(H)``
    """
    # L_c(theta) = mean(exp(log_pi - log_pi_old) * A) + c * mean(H(pi_theta(.|s)))
    surrogate = surrogate_objective(log_prob, old_log_prob, advantages)
    if ent_coef == 0.0:
        return surrogate
    if entropy is None:
        raise ValueError("`ent_coef` > 0 needs an action distribution with a closed-form entropy")
    return surrogate + ent_coef * entropy.mean()


def torch_distributions(distribution: Distribution) -> list[th.distributions.Distribution]:
    """
    The torch distribution(s) inside an SB3 (or sb3-contrib maskable) action distribution.

    :param distribution: an SB3 action distribution, after ``proba_distribution``
    :return: one torch distribution, or one per action dimension for multi-categorical distributions
        (SB3's keep them in ``distribution``, sb3-contrib's maskable one in ``distributions``)
    """
    inner = getattr(distribution, "distributions", None)
    if inner is None:
        inner = distribution.distribution
    return list(inner) if isinstance(inner, list) else [inner]


def _rebuild_torch_distribution(
    distribution: th.distributions.Distribution, transform: Callable[[th.Tensor], th.Tensor]
) -> th.distributions.Distribution:
    # The same distribution, its parameters (and masks) passed through `transform` (detach, or index the samples)
    if isinstance(distribution, th.distributions.Normal):
        return th.distributions.Normal(transform(distribution.loc), transform(distribution.scale), validate_args=False)
    if isinstance(distribution, MaskableCategorical):
        # The masked logits, and the masks (so that the masked KL knows which entries to leave out)
        masks = None if distribution.masks is None else transform(distribution.masks)
        return MaskableCategorical(logits=transform(distribution.logits), validate_args=False, masks=masks)
    if isinstance(distribution, th.distributions.Categorical):
        return th.distributions.Categorical(logits=transform(distribution.logits), validate_args=False)
    if isinstance(distribution, th.distributions.Bernoulli):
        return th.distributions.Bernoulli(logits=transform(distribution.logits), validate_args=False)
    raise TypeError(
        f"Cannot rebuild a torch distribution of type {type(distribution).__name__}: "
        "supported are Normal, Categorical and Bernoulli (SB3's on-policy action distributions)"
    )


def _rebuilt_distribution(distribution: Distribution, transform: Callable[[th.Tensor], th.Tensor]) -> Distribution:
    # A new SB3 wrapper of the same class around the rebuilt torch distribution(s)
    snapshot = copy.copy(distribution)
    rebuilt = [_rebuild_torch_distribution(dist, transform) for dist in torch_distributions(distribution)]
    if isinstance(getattr(distribution, "distributions", None), list):  # sb3-contrib's maskable multi-categorical
        snapshot.distributions = rebuilt  # type: ignore[attr-defined]
    elif isinstance(distribution.distribution, list):  # MultiCategoricalDistribution
        snapshot.distribution = rebuilt
    else:
        snapshot.distribution = rebuilt[0]
    return snapshot


def detached_distribution(distribution: Distribution) -> Distribution:
    """
    A frozen snapshot of an SB3 action distribution: ``pi_old``.

    SB3 policies reuse ONE mutable distribution wrapper (``policy.action_dist``) and overwrite its ``distribution``
    attribute on every forward pass, so keeping a reference (or a plain ``copy.copy``) of it would silently follow
    the new parameters. The snapshot is a new wrapper whose torch distribution(s) are rebuilt from detached
    parameters (mean and std, or logits, with their action masks), so later forward passes can neither change it
    nor backpropagate into it.

    :param distribution: the distribution returned by ``policy.get_distribution(obs)``
    :return: a distribution of the same class, detached from the graph
    """
    return _rebuilt_distribution(distribution, th.Tensor.detach)


def distribution_samples(distribution: Distribution, index: th.Tensor | slice) -> Distribution:
    """
    The distribution of some samples of a batch (e.g. the real samples of padded sequences), with its graph.

    :param distribution: an SB3 action distribution over a batch (first dimension: the sample)
    :param index: the samples to keep (boolean mask, indices or slice)
    :return: a new distribution of the same class over the selected samples (the original is left as it was)
    """
    return _rebuilt_distribution(distribution, lambda tensor: tensor[index])


def masked_categorical_kl(old: th.distributions.Categorical, new: th.distributions.Categorical) -> th.Tensor:
    """
    Per-sample ``KL(p_old || p_new)`` of two categoricals under the same action masks (sb3-contrib's
    ``MaskableCategorical``, or plain categoricals: no mask).

    ``KL = sum over valid actions a of p_old(a) * (log p_old(a) - log p_new(a))``: a masked action contributes exactly
    0 (it is left out of the sum, not computed as ``0 * (-1e8 - (-1e8))`` or ``0 * inf``), so neither the KL nor its
    derivatives hold NaN or inf; a state with a single valid action has ``KL = 0`` and a zero gradient.

    :param old: ``pi_old`` (its masks are the masks of both)
    :param new: ``pi_theta``
    :return: KL per sample, shape (batch,)
    """
    # KL(p || q) = sum_{a valid} p(a) (log p(a) - log q(a))
    terms = old.probs * (old.logits - new.logits)
    masks = getattr(old, "masks", None)
    if masks is not None:
        terms = th.where(masks, terms, th.zeros((), dtype=terms.dtype, device=terms.device))
    return terms.sum(dim=-1)


def kl_old_new(old_distribution: Distribution, new_distribution: Distribution) -> th.Tensor:
    """
    Per-sample ``KL(pi_old || pi_theta)`` of the joint action distribution (the paper's direction).

    SB3's ``kl_divergence`` returns one KL per independent action dimension for Gaussian and Bernoulli
    distributions, shape (batch, n_dims); the KL of the joint distribution is their sum. Categorical and
    multi-categorical KLs already come per sample, shape (batch,). (SB3's ``sum_independent_dims`` would sum a
    1-d tensor over the batch, so it is not used here.) sb3-contrib's maskable distributions (categorical,
    multi-categorical, Bernoulli as two-way categoricals) take :func:`masked_categorical_kl` per action dimension.

    :param old_distribution: ``pi_old`` (see :func:`detached_distribution`)
    :param new_distribution: ``pi_theta``, same class
    :return: KL per sample, shape (batch,)
    """
    if isinstance(old_distribution, MaskableDistribution):
        pairs = zip(torch_distributions(old_distribution), torch_distributions(new_distribution), strict=True)
        return th.stack([masked_categorical_kl(old, new) for old, new in pairs], dim=1).sum(dim=1)  # type: ignore[arg-type]
    # KL(p || q) = E_p[log p - log q], summed over independent action dimensions
    kl = kl_divergence(old_distribution, new_distribution)
    return kl.sum(dim=1) if kl.dim() > 1 else kl


#: What ``target_kl`` bounds (the algorithms' ``kl_constraint``): ``"joint"``, the paper's ``KL(pi_old || pi_theta)``
#: of the joint action distribution; ``"sb3_contrib"``, the quantity sb3-contrib's TRPO checks,
#: ``kl_divergence(pi_theta, pi_old)`` averaged over the action dimensions of Box and MultiBinary actions
KL_CONSTRAINTS = ("joint", "sb3_contrib")


def kl_new_old_sb3_contrib(old_distribution: Distribution, new_distribution: Distribution) -> th.Tensor:
    """
    Per-sample KL that sb3-contrib's TRPO bounds: ``KL(pi_theta || pi_old)`` (its direction), averaged over the
    independent action dimensions of Gaussian (gSDE included) and Bernoulli distributions, summed over the
    sub-actions of multi-categorical ones, the categorical KL itself for Discrete actions.

    sb3-contrib's line search checks ``kl_divergence(distribution, old_distribution).mean()``; SB3's
    ``kl_divergence`` gives shape (batch, n_dims) for Gaussian and Bernoulli distributions, so its ``.mean()`` is the
    batch mean of this per-sample mean. sb3-contrib's maskable distributions take :func:`masked_categorical_kl`
    (the same masks on both sides), summed over sub-actions, averaged over dimensions for MultiBinary ones.

    :param old_distribution: ``pi_old`` (see :func:`detached_distribution`)
    :param new_distribution: ``pi_theta``, same class
    :return: KL per sample, shape (batch,)
    """
    if isinstance(old_distribution, MaskableDistribution):
        pairs = zip(torch_distributions(new_distribution), torch_distributions(old_distribution), strict=True)
        kl = th.stack([masked_categorical_kl(new, old) for new, old in pairs], dim=1)  # type: ignore[arg-type]
        return kl.mean(dim=1) if isinstance(old_distribution, MaskableBernoulliDistribution) else kl.sum(dim=1)
    kl = kl_divergence(new_distribution, old_distribution)
    return kl.mean(dim=1) if kl.dim() > 1 else kl


def constrained_kl(old_distribution: Distribution, new_distribution: Distribution, kl_constraint: str) -> th.Tensor:
    """
    Per-sample KL that ``target_kl`` bounds under ``kl_constraint`` (one of :data:`KL_CONSTRAINTS`).

    :param old_distribution: ``pi_old``
    :param new_distribution: ``pi_theta``, same class
    :param kl_constraint: ``"joint"`` (:func:`kl_old_new`) or ``"sb3_contrib"`` (:func:`kl_new_old_sb3_contrib`)
    :return: KL per sample, shape (batch,)
    """
    if kl_constraint == "joint":
        return kl_old_new(old_distribution, new_distribution)
    return kl_new_old_sb3_contrib(old_distribution, new_distribution)


def kl_constraint_dimensions(action_space: spaces.Space, kl_constraint: str) -> int:
    """
    ``d`` such that the bounded KL is the joint KL divided by ``d`` to second order at ``theta_old``: its Hessian there
    (the Fisher matrix of the constraint) is ``F / d``, ``F`` the Fisher of the joint distribution.

    Both directions of the KL have the same Hessian at ``theta_old``, so only the average over dimensions counts:
    ``d`` is the number of action dimensions for Box and MultiBinary actions under ``"sb3_contrib"``, else 1.

    :param action_space: the algorithm's action space
    :param kl_constraint: one of :data:`KL_CONSTRAINTS`
    :return: ``d >= 1``
    """
    if kl_constraint == "sb3_contrib" and isinstance(action_space, (spaces.Box, spaces.MultiBinary)):
        return max(int(np.prod(action_space.shape)), 1)
    return 1


def scaled_fisher_vector_product(fvp: FisherVectorProduct, dimensions: int) -> FisherVectorProduct:
    """
    The damped product of the constraint's Fisher ``F / d`` from a product of the joint one damped by ``d * damping``:
    ``((F + d * damping * I) v) / d = (F / d + damping * I) v``, what sb3-contrib's Hessian-vector product computes
    (``cg_damping`` added to the Hessian of its averaged KL).

    :param fvp: ``v -> (F + d * damping * I) v``
    :param dimensions: ``d`` (:func:`kl_constraint_dimensions`); 1 returns ``fvp`` itself
    :return: ``v -> (F / d + damping * I) v``
    """
    if dimensions == 1:
        return fvp
    return lambda vector: fvp(vector) / dimensions


# ---------------------------------------------------------------------------------------------------------------------
# Fisher-vector product, conjugate gradient, step length, line search
# ---------------------------------------------------------------------------------------------------------------------


def fisher_vector_product(kl_grad: th.Tensor, params: Sequence[nn.Parameter], vector: th.Tensor, damping: float) -> th.Tensor:
    """
    Damped Fisher-vector product by double backward (the reference implementation).

    ``F`` is the Hessian at ``theta_old`` of the mean ``KL(pi_old || pi_theta)``; ``kl_grad`` must be the gradient
    of that KL built with ``create_graph=True``, so the same graph serves every call (it is retained).

    :param kl_grad: flat ``grad_theta KL``, shape (n,), with its graph
    :param params: the actor parameters ``theta``
    :param vector: ``v``, shape (n,)
    :param damping: ``cg_damping``, added as ``damping * v`` (Tikhonov damping)
    :return: ``(F + damping * I) v``, shape (n,)
    """
    # (F + damping * I) v,  F v = grad_theta((grad_theta KL) . v)          [Hessian of KL = Fisher at theta_old]
    return flat_grad(th.dot(kl_grad, vector), params, retain_graph=True).detach() + damping * vector


def conjugate_gradient(
    fvp: FisherVectorProduct,
    g: th.Tensor,
    max_iter: int,
    residual_tol: float = 1e-10,
    x0: th.Tensor | None = None,
) -> CGResult:
    """
    Conjugate gradient for ``A x = g`` with ``A`` symmetric positive definite, given only ``v -> A v``.

    Stops after ``max_iter`` products, when the squared residual norm drops below ``residual_tol``, or when a
    search direction has non-positive curvature (``p^T A p <= 0``: ``A`` is not positive definite along it),
    in which case the iterate reached so far is returned. Reference: Nocedal & Wright, Numerical Optimization,
    Algorithm 5.2.

    :param fvp: ``v -> A v``
    :param g: right-hand side, shape (n,)
    :param max_iter: maximum number of iterations (>= 1)
    :param residual_tol: tolerance on the squared residual norm ``r^T r``
    :param x0: starting point (warm start); ``None`` starts from zero
    :return: :class:`CGResult`
    """
    # x ~= A^-1 g                                                          [Nocedal & Wright, Alg. 5.2]
    if x0 is None:
        x = th.zeros_like(g)
        r = g.clone()
    else:
        x = x0.clone()
        r = g - fvp(x)
    p = r.clone()
    r_dot_r = th.dot(r, r)
    n_iter = 0
    converged = bool(r_dot_r < residual_tol)
    while not converged and n_iter < max_iter:
        a_p = fvp(p)
        curvature = th.dot(p, a_p)
        n_iter += 1
        if not bool(curvature > 0):
            break
        alpha = r_dot_r / curvature
        x += alpha * p
        r -= alpha * a_p
        new_r_dot_r = th.dot(r, r)
        converged = bool(new_r_dot_r < residual_tol)
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
    return CGResult(x=x, n_iter=n_iter, residual_norm=th.sqrt(r_dot_r), converged=converged, residual=r)


def max_step_length(direction: th.Tensor, fvp_direction: th.Tensor, target_kl: float) -> float:
    """
    Largest step along ``s`` that the quadratic model of the KL allows.

    With ``KL(theta_old + beta * s) ~= 0.5 * beta**2 * s^T F s``, setting it equal to ``delta`` gives ``beta``.
    Returns 0.0 when ``s^T F s`` is not positive and finite (no step can be sized).

    :param direction: search direction ``s``, shape (n,)
    :param fvp_direction: ``F s``, shape (n,)
    :param target_kl: trust-region radius ``delta``
    :return: ``beta``
    """
    # beta = sqrt(2 * delta / (s^T F s))                                     [TRPO paper, App. C]
    s_f_s = float(th.dot(direction, fvp_direction))
    if not (math.isfinite(s_f_s) and s_f_s > 0.0):
        return 0.0
    return math.sqrt(2.0 * target_kl / s_f_s)


def backtracking_line_search(
    evaluate: Callable[[float], tuple[float, float]],
    old_surrogate: float,
    target_kl: float,
    shrink: float,
    max_iter: int,
) -> LineSearchResult:
    """
    Backtracking line search on the fraction of the full natural-gradient step.

    Tries ``fraction = shrink**j`` for ``j = 0 .. max_iter - 1`` and accepts the first candidate whose
    ``KL(pi_old || pi_theta) <= target_kl`` and whose surrogate improves on ``old_surrogate`` (both finite).
    ``evaluate`` moves the parameters to the candidate and measures it; restoring the old parameters after a
    failure is the caller's job (it holds them).

    :param evaluate: ``fraction -> (L(theta), KL(pi_old || pi_theta))`` at ``theta_old + fraction * full_step``
    :param old_surrogate: ``L(theta_old)``
    :param target_kl: trust-region radius ``delta``
    :param shrink: ``line_search_shrinking_factor``, in (0, 1)
    :param max_iter: ``line_search_max_iter``, >= 1
    :return: :class:`LineSearchResult`
    """
    # try fraction = shrink**j; accept the first with KL <= delta and L(theta') > L(theta_old)
    fraction = 1.0
    for n_backtracks in range(max_iter):
        surrogate, kl = evaluate(fraction)
        if math.isfinite(surrogate) and math.isfinite(kl) and kl <= target_kl and surrogate > old_surrogate:
            return LineSearchResult(True, fraction, n_backtracks, kl, surrogate)
        fraction *= shrink
    return LineSearchResult(False, 0.0, max_iter, 0.0, old_surrogate)


# ---------------------------------------------------------------------------------------------------------------------
# Adaptive trust-region radius
# ---------------------------------------------------------------------------------------------------------------------

#: Factor by which the radius grows or shrinks after an update
RADIUS_FACTOR = 1.5
#: The radius stays within [target_kl / RADIUS_BOUND, RADIUS_BOUND * target_kl]
RADIUS_BOUND = 10.0


def adapt_trust_region_radius(radius: float, target_kl: float, step: LineSearchResult) -> float:
    """
    The trust-region radius of the next update, from how the step of this one went (``adaptive_kl``).

    The exact rule, with ``f = RADIUS_FACTOR = 1.5`` and ``b = RADIUS_BOUND = 10``:

    - grow: the FULL step was accepted (``fraction == 1``) with ``KL <= radius / f``, well inside the region (the
      quadratic model of the KL was pessimistic): ``radius = min(f * radius, b * target_kl)``;
    - shrink: no step was accepted (a failed line search, a non-finite objective or KL), or the KL reached exceeds
      ``f * radius`` (NPG, which has no line search to reject an overshoot): ``radius = max(radius / f, target_kl / b)``;
    - otherwise the radius is kept.

    :param radius: the radius ``delta`` this update used
    :param target_kl: the configured radius, the centre of the bounds
    :param step: the step this update took
    :return: the radius of the next update
    """
    # grow x f after an accepted full step with KL <= delta / f; shrink / f after a rejection or KL > f * delta
    if not step.accepted or step.kl > RADIUS_FACTOR * radius:
        return max(radius / RADIUS_FACTOR, target_kl / RADIUS_BOUND)
    if step.fraction == 1.0 and step.kl <= radius / RADIUS_FACTOR:
        return min(radius * RADIUS_FACTOR, target_kl * RADIUS_BOUND)
    return radius
