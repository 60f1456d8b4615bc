"""
The natural-gradient step of TRPO as small pure functions of tensors, parameters and callables, each checked on its
own against a dense reference (``docs/design.md``, "The update, step by step").

Notation of the TRPO paper (Schulman et al., 2015, https://arxiv.org/abs/1502.05477): ``theta`` the actor parameters,
``L(theta)`` the surrogate objective, ``g`` its gradient at ``theta_old``, ``F`` the Fisher matrix (the Hessian of the
mean ``KL(pi_old || pi_theta)`` at ``theta_old``), ``delta`` the trust-region radius (``target_kl``).
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
    :param n_iter: number of matrix-vector products inside the loop
    :param residual_norm: ``||r||`` as tracked by the recurrence (a 0-d tensor)
    :param converged: whether ``r^T r`` fell below the tolerance
    :param residual: ``r = b - A x`` as tracked by the recurrence, shape (n,): ``b - r`` is ``A x`` without a product
    """

    x: th.Tensor
    n_iter: int
    residual_norm: th.Tensor
    converged: bool
    residual: th.Tensor


class LineSearchResult(NamedTuple):
    """
    Outcome of a step (:func:`backtracking_line_search`, or NPG's full step).

    :param accepted: whether a candidate was accepted
    :param fraction: the accepted fraction ``shrink**j`` of the full step (0.0 when none was)
    :param n_backtracks: candidates rejected before the accepted one (``max_iter`` when none was accepted)
    :param kl: the KL at the accepted candidate (0.0 when none was)
    :param surrogate: ``L(theta)`` at the accepted candidate (``old_surrogate`` when none was)
    """

    accepted: bool
    fraction: float
    n_backtracks: int
    kl: float
    surrogate: float


def get_flat_params(params: Sequence[nn.Parameter]) -> th.Tensor:
    """Concatenate the parameters into one detached vector (a copy)."""
    return th.nn.utils.parameters_to_vector(params).detach().clone()


def set_flat_params(params: Sequence[nn.Parameter], flat: th.Tensor) -> None:
    """Write a flat vector (in the order of :func:`get_flat_params`) back into the parameters, in place and bit for bit."""
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
    Gradient of a scalar with respect to all ``params`` in one autograd call, flattened; zero for the parameters that
    do not influence ``output``.

    :param create_graph: keep the graph of the gradient itself (for second derivatives)
    :param retain_graph: keep the graph of ``output`` for further calls (defaults to ``create_graph``)
    """
    grads = th.autograd.grad(output, list(params), create_graph=create_graph, retain_graph=retain_graph, allow_unused=True)
    return th.cat(
        [(grad if grad is not None else th.zeros_like(param)).reshape(-1) for grad, param in zip(grads, params, strict=True)]
    )


def normalize_advantages(advantages: th.Tensor, eps: float = 1e-8) -> th.Tensor:
    """``(A - mean(A)) / (std(A) + eps)``; a batch of one sample (whose std is NaN) is only centred."""
    if advantages.numel() < 2:
        return advantages - advantages.mean()
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def surrogate_objective(log_prob: th.Tensor, old_log_prob: th.Tensor, advantages: th.Tensor) -> th.Tensor:
    """
    TRPO's surrogate ``L(theta) = mean(exp(log_pi_theta - log_pi_old) * A)`` (paper, Sec. 5): ``mean(A)`` at
    ``theta_old``, where its gradient is the policy gradient ``g``.

    :param log_prob: ``log pi_theta(a|s)``, shape (batch,)
    :param old_log_prob: ``log pi_old(a|s)``, detached, shape (batch,)
    :param advantages: ``A(s, a)``, shape (batch,)
    """
    return (th.exp(log_prob - old_log_prob) * advantages).mean()


def entropy_regularized_surrogate(
    log_prob: th.Tensor,
    old_log_prob: th.Tensor,
    advantages: th.Tensor,
    entropy: th.Tensor | None,
    ent_coef: float,
) -> th.Tensor:
    """
    ``L(theta) + ent_coef * mean(H)``, the objective of the ``ent_coef`` option; with ``ent_coef == 0`` it is
    :func:`surrogate_objective` itself, the same tensor operations.

    :param entropy: the joint action distribution's entropy per sample, shape (batch,), or None (none in closed form)
    """
    surrogate = surrogate_objective(log_prob, old_log_prob, advantages)
    if ent_coef == 0.0:
        return surrogate
    if entropy is None:
        raise ValueError("`ent_coef` > 0 needs an action distribution with a closed-form entropy")
    return surrogate + ent_coef * entropy.mean()


def torch_distributions(distribution: Distribution) -> list[th.distributions.Distribution]:
    """
    The torch distribution(s) inside an SB3 (or sb3-contrib maskable) action distribution, one per action dimension for
    multi-categorical ones (SB3's keep them in ``distribution``, sb3-contrib's maskable one in ``distributions``).
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
        # The masks go along, so that the masked KL knows which entries to leave out
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
    ``pi_old``: a frozen snapshot of an SB3 action distribution, a new wrapper around torch distributions rebuilt from
    detached parameters (and action masks). SB3 policies overwrite one mutable wrapper on every forward pass, so a
    reference or a ``copy.copy`` of it would follow the new parameters.
    """
    return _rebuilt_distribution(distribution, th.Tensor.detach)


def distribution_samples(distribution: Distribution, index: th.Tensor | slice) -> Distribution:
    """A new distribution over the samples ``index`` (mask, indices or slice) of a batch, with its graph."""
    return _rebuilt_distribution(distribution, lambda tensor: tensor[index])


def masked_categorical_kl(old: th.distributions.Categorical, new: th.distributions.Categorical) -> th.Tensor:
    """
    Per-sample ``KL(p_old || p_new) = sum over valid a of p_old(a) * (log p_old(a) - log p_new(a))`` of two
    categoricals under ``old``'s action masks (sb3-contrib's ``MaskableCategorical``; a plain one has no mask).

    A masked action is left out of the sum (not computed as ``0 * inf``), so neither the KL nor its derivatives hold
    NaN or inf; a state with a single valid action has ``KL = 0`` and a zero gradient.
    """
    terms = old.probs * (old.logits - new.logits)
    masks = getattr(old, "masks", None)
    if masks is not None:
        terms = th.where(masks, terms, th.zeros((), dtype=terms.dtype, device=terms.device))
    return terms.sum(dim=-1)


def kl_old_new(old_distribution: Distribution, new_distribution: Distribution) -> th.Tensor:
    """
    Per-sample ``KL(pi_old || pi_theta)`` of the joint action distribution (the paper's direction), shape (batch,).

    SB3's ``kl_divergence`` gives one KL per independent dimension for Gaussian and Bernoulli distributions (summed
    here; ``sum_independent_dims`` would sum a 1-d tensor over the batch); sb3-contrib's maskable distributions take
    :func:`masked_categorical_kl` per action dimension.
    """
    if isinstance(old_distribution, MaskableDistribution):
        pairs = zip(torch_distributions(old_distribution), torch_distributions(new_distribution), strict=True)
        return th.stack([masked_categorical_kl(old, new) for old, new in pairs], dim=1).sum(dim=1)  # type: ignore[arg-type]
    kl = kl_divergence(old_distribution, new_distribution)
    return kl.sum(dim=1) if kl.dim() > 1 else kl


#: The values of the algorithms' ``kl_constraint``, what ``target_kl`` bounds (:func:`constrained_kl`)
KL_CONSTRAINTS = ("joint", "sb3_contrib")


def kl_new_old_sb3_contrib(old_distribution: Distribution, new_distribution: Distribution) -> th.Tensor:
    """
    Per-sample KL that sb3-contrib's TRPO bounds, ``kl_divergence(pi_theta, pi_old).mean()`` per sample:
    ``KL(pi_theta || pi_old)`` averaged over the independent dimensions of Gaussian (gSDE included) and Bernoulli
    distributions, summed over the sub-actions of multi-categorical ones; for sb3-contrib's maskable distributions,
    :func:`masked_categorical_kl` summed over sub-actions (averaged for MultiBinary).
    """
    if isinstance(old_distribution, MaskableDistribution):
        pairs = zip(torch_distributions(new_distribution), torch_distributions(old_distribution), strict=True)
        kl = th.stack([masked_categorical_kl(new, old) for new, old in pairs], dim=1)  # type: ignore[arg-type]
        return kl.mean(dim=1) if isinstance(old_distribution, MaskableBernoulliDistribution) else kl.sum(dim=1)
    kl = kl_divergence(new_distribution, old_distribution)
    return kl.mean(dim=1) if kl.dim() > 1 else kl


def constrained_kl(old_distribution: Distribution, new_distribution: Distribution, kl_constraint: str) -> th.Tensor:
    """Per-sample KL that ``target_kl`` bounds: :func:`kl_old_new` or :func:`kl_new_old_sb3_contrib`."""
    if kl_constraint == "joint":
        return kl_old_new(old_distribution, new_distribution)
    return kl_new_old_sb3_contrib(old_distribution, new_distribution)


def kl_constraint_dimensions(action_space: spaces.Space, kl_constraint: str) -> int:
    """
    ``d`` such that the bounded KL's Hessian at ``theta_old`` is ``F / d``: the number of action dimensions for Box and
    MultiBinary actions under ``"sb3_contrib"`` (whose KL is averaged over them), else 1. Both directions of the KL
    have the same Hessian there.
    """
    if kl_constraint == "sb3_contrib" and isinstance(action_space, (spaces.Box, spaces.MultiBinary)):
        return max(int(np.prod(action_space.shape)), 1)
    return 1


def scaled_fisher_vector_product(fvp: FisherVectorProduct, dimensions: int) -> FisherVectorProduct:
    """
    ``v -> (F / d + damping * I) v`` from ``fvp: v -> (F + d * damping * I) v``: the damped Hessian-vector product of
    sb3-contrib's averaged KL. ``d == 1`` returns ``fvp`` itself.
    """
    if dimensions == 1:
        return fvp
    return lambda vector: fvp(vector) / dimensions


def fisher_vector_product(kl_grad: th.Tensor, params: Sequence[nn.Parameter], vector: th.Tensor, damping: float) -> th.Tensor:
    """
    ``(F + damping * I) v`` by double backward, the reference: ``F v = grad_theta((grad_theta KL) . v)``.

    :param kl_grad: flat gradient of the mean KL, built with ``create_graph=True`` (its graph serves every call)
    :param params: the actor parameters ``theta``
    """
    return flat_grad(th.dot(kl_grad, vector), params, retain_graph=True).detach() + damping * vector


def conjugate_gradient(
    fvp: FisherVectorProduct,
    g: th.Tensor,
    max_iter: int,
    residual_tol: float = 1e-10,
    x0: th.Tensor | None = None,
) -> CGResult:
    """
    Conjugate gradient for ``A x = g``, ``A`` symmetric positive definite, given ``fvp: v -> A v`` (Nocedal & Wright,
    Numerical Optimization, Algorithm 5.2).

    Stops after ``max_iter`` products, when ``r^T r < residual_tol``, or at a direction of non-positive curvature
    (``p^T A p <= 0``), returning the iterate reached.

    :param x0: starting point (warm start); None starts from zero
    """
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
    ``beta = sqrt(2 * delta / s^T F s)``, the step along ``s`` at which the quadratic model of the KL,
    ``0.5 * beta**2 * s^T F s``, reaches ``delta`` (paper, Appendix C); 0.0 when ``s^T F s`` is not positive and finite.

    :param direction: ``s``
    :param fvp_direction: ``F s``
    :param target_kl: ``delta``
    """
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
    Accept the first ``fraction = shrink**j`` (``j = 0 .. max_iter - 1``) of the full step whose KL is at most
    ``target_kl`` and whose surrogate improves on ``old_surrogate`` (both finite). Restoring ``theta_old`` after a
    failure is the caller's job.

    :param evaluate: ``fraction -> (L(theta), KL)`` at ``theta_old + fraction * full_step`` (it moves the parameters)
    """
    fraction = 1.0
    for n_backtracks in range(max_iter):
        surrogate, kl = evaluate(fraction)
        if math.isfinite(surrogate) and math.isfinite(kl) and kl <= target_kl and surrogate > old_surrogate:
            return LineSearchResult(True, fraction, n_backtracks, kl, surrogate)
        fraction *= shrink
    return LineSearchResult(False, 0.0, max_iter, 0.0, old_surrogate)


#: Factor by which the ``adaptive_kl`` radius grows or shrinks after an update
RADIUS_FACTOR = 1.5
#: The radius stays within [target_kl / RADIUS_BOUND, RADIUS_BOUND * target_kl]
RADIUS_BOUND = 10.0


def adapt_trust_region_radius(radius: float, target_kl: float, step: LineSearchResult) -> float:
    """
    The next update's trust-region radius (``adaptive_kl``), with ``f = RADIUS_FACTOR`` and ``b = RADIUS_BOUND``:

    - grow to ``min(f * radius, b * target_kl)`` after a full step (``fraction == 1``) accepted with
      ``KL <= radius / f`` (the quadratic model was pessimistic);
    - shrink to ``max(radius / f, target_kl / b)`` when no step was accepted, or the KL exceeds ``f * radius`` (NPG,
      which has no line search to reject an overshoot);
    - otherwise keep it.

    :param radius: the radius this update used
    :param target_kl: the configured radius, the centre of the bounds
    """
    if not step.accepted or step.kl > RADIUS_FACTOR * radius:
        return max(radius / RADIUS_FACTOR, target_kl / RADIUS_BOUND)
    if step.fraction == 1.0 and step.kl <= radius / RADIUS_FACTOR:
        return min(radius * RADIUS_FACTOR, target_kl * RADIUS_BOUND)
    return radius
