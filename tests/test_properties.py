"""Property-based checks (hypothesis) of the natural-gradient math on random problems."""

import math

import pytest
import torch as th
from gymnasium import spaces
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_trpo.common.natural_gradient import (
    backtracking_line_search,
    conjugate_gradient,
    detached_distribution,
    fisher_vector_product,
    flat_grad,
    kl_old_new,
)
from sb3_trpo.common.policies import actor_critic_parameters

FAST = settings(max_examples=40, deadline=None)


@FAST
@given(n=st.integers(1, 12), seed=st.integers(0, 2**31 - 1), shift=st.floats(1e-2, 10.0))
@example(n=12, seed=114827, shift=0.01)  # n steps leave a residual of 1.6e-4 here (condition number 3289)
def test_cg_on_random_spd_systems_reaches_a_small_residual(n, seed, shift):
    generator = th.Generator().manual_seed(seed)
    m = th.randn(n, n, generator=generator, dtype=th.float64)
    a = m @ m.T + shift * th.eye(n, dtype=th.float64)
    b = th.randn(n, generator=generator, dtype=th.float64)
    result = conjugate_gradient(lambda v: a @ v, b, max_iter=n, residual_tol=0.0)
    assert result.n_iter <= n
    # CG never increases the quadratic model: f(x) = 0.5 x^T A x - b^T x <= f(0) = 0
    assert float(0.5 * result.x @ a @ result.x - b @ result.x) <= 1e-12
    # n steps solve an n x n SPD system exactly only in exact arithmetic: in float64 the search directions lose
    # their conjugacy and convergence is delayed (Greenbaum, Iterative Methods for Solving Linear Systems, ch. 4),
    # so an ill-conditioned system may need more. Over 20,000 random systems of this test's kind, 2n steps always
    # reached a residual within 1.5 * eps * cond(A) * |b|, the attainable accuracy; n steps missed it 56 times.
    result = conjugate_gradient(lambda v: a @ v, b, max_iter=2 * n, residual_tol=0.0)
    condition = float(th.linalg.cond(a))
    residual = float(th.linalg.norm(b - a @ result.x))
    assert residual <= 1e-10 * condition * float(th.linalg.norm(b)) + 1e-12


@pytest.fixture(scope="module")
def float64_observations():
    import stable_baselines3.common.policies as sb3_policies

    original = sb3_policies.preprocess_obs
    sb3_policies.preprocess_obs = lambda obs, *args, **kwargs: obs
    yield
    sb3_policies.preprocess_obs = original


POLICY_SPACES = st.sampled_from(
    [spaces.Box(-1, 1, (1,)), spaces.Box(-1, 1, (3,)), spaces.Discrete(2), spaces.Discrete(5), spaces.MultiDiscrete([2, 4])]
)


@settings(max_examples=15, deadline=None)
@given(action_space=POLICY_SPACES, hidden=st.integers(1, 6), batch=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_fisher_product_matches_the_explicit_hessian_on_random_policies(
    float64_observations, action_space, hidden, batch, seed
):
    th.manual_seed(seed)
    policy = ActorCriticPolicy(spaces.Box(-1, 1, (2,)), action_space, lambda _: 1e-3, net_arch=[hidden]).double()
    obs = th.randn(batch, 2, dtype=th.float64)
    actor, _ = actor_critic_parameters(policy)
    distribution = policy.get_distribution(obs)
    old = detached_distribution(distribution)
    kl_grad = flat_grad(kl_old_new(old, distribution).mean(), actor, create_graph=True)

    # Explicit Hessian, column by column, by differentiating the gradient of the KL twice (independent of the FVP code)
    n = kl_grad.shape[0]
    columns = [flat_grad(kl_grad[i], actor, retain_graph=True) for i in range(n)]
    hessian = th.stack(columns)
    v = th.randn(n, dtype=th.float64)
    assert th.allclose(fisher_vector_product(kl_grad, actor, v, damping=0.0), hessian @ v, rtol=1e-7, atol=1e-10)
    # The Fisher matrix is symmetric positive semi-definite
    assert th.allclose(hessian, hessian.T, atol=1e-9)
    assert float(th.linalg.eigvalsh(hessian).min()) >= -1e-9


@FAST
@given(
    gradient=st.lists(st.floats(-5, 5), min_size=1, max_size=4),
    curvature=st.floats(0.0, 5.0),
    kl_scale=st.floats(1e-3, 1e3),
    target_kl=st.floats(1e-4, 1.0),
    shrink=st.floats(0.1, 0.9),
    max_iter=st.integers(1, 15),
    step_scale=st.floats(-3.0, 3.0),
)
def test_line_search_never_accepts_a_step_violating_either_condition(
    gradient, curvature, kl_scale, target_kl, shrink, max_iter, step_scale
):
    c = th.tensor(gradient, dtype=th.float64)
    step = step_scale * th.ones_like(c)

    def surrogate(delta: th.Tensor) -> float:
        return float(c @ delta - 0.5 * curvature * delta @ delta)

    def kl(delta: th.Tensor) -> float:
        return float(0.5 * kl_scale * delta @ delta)

    def evaluate(fraction: float) -> tuple[float, float]:
        delta = fraction * step
        return surrogate(delta), kl(delta)

    result = backtracking_line_search(evaluate, 0.0, target_kl, shrink, max_iter)
    if result.accepted:
        delta = result.fraction * step
        assert kl(delta) <= target_kl and result.kl == kl(delta)
        assert surrogate(delta) > 0.0 and result.surrogate == surrogate(delta)
    # Candidates are shrink**j for j = 0, 1, ...: none before the accepted one (or none at all) passes both tests
    fraction = 1.0
    for _ in range(result.n_backtracks if result.accepted else max_iter):
        candidate = fraction * step
        assert not (kl(candidate) <= target_kl and surrogate(candidate) > 0.0)
        fraction *= shrink
    if result.accepted:
        assert result.fraction == fraction
    else:
        assert result.fraction == 0.0 and math.isfinite(result.surrogate)
