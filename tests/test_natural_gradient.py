"""Exact numerical checks of sb3_trpo.common.natural_gradient on problems with known answers."""

import math

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from sb3_trpo.common.natural_gradient import (
    backtracking_line_search,
    conjugate_gradient,
    detached_distribution,
    fisher_vector_product,
    flat_grad,
    get_flat_params,
    kl_old_new,
    max_step_length,
    normalize_advantages,
    set_flat_params,
    surrogate_objective,
)
from sb3_trpo.common.policies import actor_critic_parameters

# ---------------------------------------------------------------------------------------------------------------------
# Flat parameters and gradients
# ---------------------------------------------------------------------------------------------------------------------


def test_flat_params_round_trip_is_exact():
    th.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    params = list(net.parameters())
    flat = get_flat_params(params)
    assert flat.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    # The snapshot is a copy: changing the parameters does not change it
    set_flat_params(params, th.randn_like(flat))
    assert not th.equal(get_flat_params(params), flat)
    set_flat_params(params, flat)
    assert th.equal(get_flat_params(params), flat)
    assert th.equal(params[0].detach().reshape(-1), flat[:12])
    with pytest.raises(ValueError, match="elements"):
        set_flat_params(params, flat[:-1])


def test_flat_grad_matches_per_parameter_grads_and_zero_fills_unused():
    th.manual_seed(0)
    used = nn.Linear(3, 2)
    unused = nn.Linear(2, 2)
    params = list(used.parameters()) + list(unused.parameters())
    x = th.randn(5, 3)
    loss = (used(x) ** 2).sum()
    grad = flat_grad(loss, params, retain_graph=True)
    expected = th.autograd.grad(loss, list(used.parameters()))
    n_used = sum(p.numel() for p in used.parameters())
    assert th.allclose(grad[:n_used], th.cat([g.reshape(-1) for g in expected]))
    assert th.equal(grad[n_used:], th.zeros(sum(p.numel() for p in unused.parameters())))


# ---------------------------------------------------------------------------------------------------------------------
# Surrogate and advantages
# ---------------------------------------------------------------------------------------------------------------------


def test_surrogate_at_theta_old_is_mean_advantage_and_its_gradient_is_the_policy_gradient():
    th.manual_seed(0)
    logits = th.randn(6, 3, requires_grad=True)
    actions = th.tensor([0, 1, 2, 0, 1, 2])
    advantages = th.randn(6)
    log_prob = th.distributions.Categorical(logits=logits).log_prob(actions)
    surrogate = surrogate_objective(log_prob, log_prob.detach(), advantages)
    assert th.allclose(surrogate, advantages.mean())
    (grad,) = th.autograd.grad(surrogate, logits)
    # grad of mean(A * log pi) (the REINFORCE form)
    log_prob2 = th.distributions.Categorical(logits=logits).log_prob(actions)
    (expected,) = th.autograd.grad((log_prob2 * advantages).mean(), logits)
    assert th.allclose(grad, expected, atol=1e-7)


def test_normalize_advantages():
    advantages = th.tensor([1.0, 2.0, 3.0, 6.0])
    normalized = normalize_advantages(advantages)
    assert abs(float(normalized.mean())) < 1e-6
    assert abs(float(normalized.std()) - 1.0) < 1e-6
    # A batch of one sample is only centered (no NaN)
    assert th.equal(normalize_advantages(th.tensor([5.0])), th.tensor([0.0]))
    # Equal advantages give zeros, not NaN
    assert th.equal(normalize_advantages(th.full((4,), 2.0)), th.zeros(4))


# ---------------------------------------------------------------------------------------------------------------------
# Conjugate gradient
# ---------------------------------------------------------------------------------------------------------------------


def _random_spd(n: int, seed: int) -> th.Tensor:
    generator = th.Generator().manual_seed(seed)
    m = th.randn(n, n, generator=generator, dtype=th.float64)
    return m @ m.T + 0.1 * th.eye(n, dtype=th.float64)


@pytest.mark.parametrize("n", [1, 5, 20])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugate_gradient_matches_linalg_solve(n, seed):
    a = _random_spd(n, seed)
    b = th.randn(n, generator=th.Generator().manual_seed(100 + seed), dtype=th.float64)
    # In exact arithmetic CG solves an n x n SPD system in n steps; allow a few more for round-off
    result = conjugate_gradient(lambda v: a @ v, b, max_iter=3 * n, residual_tol=1e-20)
    expected = th.linalg.solve(a, b)
    assert th.allclose(result.x, expected, rtol=1e-6, atol=1e-8)
    assert result.converged
    assert float(th.linalg.norm(b - a @ result.x)) < 1e-6 * float(th.linalg.norm(b))
    # The tracked residual is the true residual
    assert math.isclose(float(result.residual_norm), float(th.linalg.norm(b - a @ result.x)), abs_tol=1e-8)


def test_conjugate_gradient_respects_max_iter_and_warm_start():
    a = _random_spd(30, 3)
    b = th.randn(30, dtype=th.float64, generator=th.Generator().manual_seed(4))
    partial = conjugate_gradient(lambda v: a @ v, b, max_iter=3, residual_tol=0.0)
    assert partial.n_iter == 3 and not partial.converged
    # Warm start from the exact solution: no iteration needed
    exact = th.linalg.solve(a, b)
    warm = conjugate_gradient(lambda v: a @ v, b, max_iter=10, residual_tol=1e-16, x0=exact)
    assert warm.n_iter == 0 and warm.converged
    assert th.allclose(warm.x, exact)
    # Warm start from a partial solution continues to the exact one
    resumed = conjugate_gradient(lambda v: a @ v, b, max_iter=200, residual_tol=1e-22, x0=partial.x)
    assert th.allclose(resumed.x, exact, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("max_iter", [1, 4, 25])
def test_conjugate_gradient_residual_gives_the_product_of_its_solution(max_iter):
    # TRPO sizes its step with s^T A s = s . (g - r): the tracked residual must equal g - A x, converged or not,
    # from zero or from a warm start, in float32 as TRPO runs it
    a = _random_spd(40, 5).float()
    b = th.randn(40, generator=th.Generator().manual_seed(6))
    for x0 in (None, th.randn(40, generator=th.Generator().manual_seed(7))):
        result = conjugate_gradient(lambda v: a @ v, b, max_iter=max_iter, residual_tol=0.0, x0=x0)
        assert th.allclose(b - result.residual, a @ result.x, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
        quadratic = float(th.dot(result.x, a @ result.x))
        assert math.isclose(float(th.dot(result.x, b - result.residual)), quadratic, rel_tol=1e-4)


def test_conjugate_gradient_stops_on_non_positive_curvature():
    # A = diag(1, -1): the second direction has negative curvature
    a = th.diag(th.tensor([1.0, -1.0], dtype=th.float64))
    b = th.tensor([1.0, 1.0], dtype=th.float64)
    result = conjugate_gradient(lambda v: a @ v, b, max_iter=10)
    assert th.isfinite(result.x).all()
    assert not result.converged
    # Zero right-hand side: converged at once, x = 0
    zero = conjugate_gradient(lambda v: a @ v, th.zeros(2, dtype=th.float64), max_iter=10)
    assert zero.converged and zero.n_iter == 0 and th.equal(zero.x, th.zeros(2, dtype=th.float64))


# ---------------------------------------------------------------------------------------------------------------------
# Fisher-vector product against an explicit Hessian of the mean KL
# ---------------------------------------------------------------------------------------------------------------------

ACTION_SPACES = {
    "gaussian": (spaces.Box(-1, 1, (2,)), False),
    "gsde": (spaces.Box(-1, 1, (2,)), True),
    "categorical": (spaces.Discrete(3), False),
    "multi_categorical": (spaces.MultiDiscrete([2, 3]), False),
    "bernoulli": (spaces.MultiBinary(3), False),
}


@pytest.fixture
def float64_observations(monkeypatch):
    """SB3 casts Box observations to float32; keep float64 so the checks below can be exact to ~1e-10."""
    import stable_baselines3.common.policies as sb3_policies

    monkeypatch.setattr(sb3_policies, "preprocess_obs", lambda obs, *args, **kwargs: obs)


def _tiny_policy(action_space: spaces.Space, use_sde: bool, seed: int = 0) -> ActorCriticPolicy:
    th.manual_seed(seed)
    policy = ActorCriticPolicy(
        spaces.Box(-1, 1, (3,)),
        action_space,
        lambda _: 1e-3,
        net_arch=[5],
        use_sde=use_sde,
        log_std_init=-0.3,
    )
    policy = policy.double()
    # Move log_std away from its constant initialization so its Fisher block is not trivially uniform
    if isinstance(getattr(policy, "log_std", None), nn.Parameter):
        with th.no_grad():
            policy.log_std.add_(0.2 * th.randn_like(policy.log_std))
    return policy


def reference_mean_kl(old_dist, new_dist) -> th.Tensor:
    """Mean over the batch of KL(pi_old || pi_theta), written independently of sb3_trpo (closed forms)."""
    old, new = old_dist.distribution, new_dist.distribution
    if isinstance(old, list):  # multi-categorical: sum over the independent categoricals
        return sum(reference_mean_kl_categorical(p.logits, q.logits) for p, q in zip(old, new, strict=True))
    if isinstance(old, th.distributions.Normal):
        var_ratio = (old.scale / new.scale) ** 2
        per_dim = 0.5 * (var_ratio + ((old.loc - new.loc) / new.scale) ** 2 - 1 - th.log(var_ratio))
        return per_dim.sum(dim=1).mean()
    if isinstance(old, th.distributions.Categorical):
        return reference_mean_kl_categorical(old.logits, new.logits)
    assert isinstance(old, th.distributions.Bernoulli)
    p, q = old.probs, new.probs
    per_dim = p * (th.log(p) - th.log(q)) + (1 - p) * (th.log(1 - p) - th.log(1 - q))
    return per_dim.sum(dim=1).mean()


def reference_mean_kl_categorical(old_logits: th.Tensor, new_logits: th.Tensor) -> th.Tensor:
    log_p, log_q = th.log_softmax(old_logits, dim=-1), th.log_softmax(new_logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()


def _explicit_kl_hessian(policy: ActorCriticPolicy, obs: th.Tensor, old_dist) -> th.Tensor:
    """Hessian of theta -> mean KL(pi_old || pi_theta) at theta_old, by torch.autograd.functional.hessian
    of the independently written reference KL."""
    actor, _ = actor_critic_parameters(policy)
    names = {id(param): name for name, param in policy.named_parameters()}
    actor_names = [names[id(param)] for param in actor]
    shapes = [param.shape for param in actor]
    theta_old = get_flat_params(actor)

    def mean_kl(theta: th.Tensor) -> th.Tensor:
        chunks = th.split(theta, [int(np.prod(shape)) for shape in shapes])
        new_params = {name: chunk.view(shape) for name, chunk, shape in zip(actor_names, chunks, shapes, strict=True)}

        class Wrapper(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.policy = policy

            def forward(self, x: th.Tensor) -> th.Tensor:
                return reference_mean_kl(old_dist, self.policy.get_distribution(x))

        wrapper = Wrapper()
        return th.func.functional_call(wrapper, {f"policy.{name}": value for name, value in new_params.items()}, (obs,))

    return th.autograd.functional.hessian(mean_kl, theta_old)


@pytest.mark.parametrize("kind", list(ACTION_SPACES))
def test_fisher_vector_product_matches_explicit_kl_hessian(kind, float64_observations):
    action_space, use_sde = ACTION_SPACES[kind]
    policy = _tiny_policy(action_space, use_sde)
    obs = th.randn(7, 3, dtype=th.float64, generator=th.Generator().manual_seed(1))
    actor, _ = actor_critic_parameters(policy)

    distribution = policy.get_distribution(obs)
    old_dist = detached_distribution(distribution)
    kl = kl_old_new(old_dist, distribution).mean()
    # At theta_old the KL and its gradient are zero
    assert abs(float(kl.detach())) < 1e-12
    kl_grad = flat_grad(kl, actor, create_graph=True)
    assert float(kl_grad.abs().max()) < 1e-12

    hessian = _explicit_kl_hessian(policy, obs, old_dist)
    n = hessian.shape[0]
    assert n == sum(param.numel() for param in actor)
    # The Fisher matrix is symmetric positive semi-definite
    assert th.allclose(hessian, hessian.T, atol=1e-10)
    assert float(th.linalg.eigvalsh(hessian).min()) > -1e-10

    damping = 0.1
    for seed in range(3):
        v = th.randn(n, dtype=th.float64, generator=th.Generator().manual_seed(10 + seed))
        fvp = fisher_vector_product(kl_grad, actor, v, damping)
        expected = hessian @ v + damping * v
        assert th.allclose(fvp, expected, rtol=1e-8, atol=1e-10), kind


@pytest.mark.parametrize("kind", list(ACTION_SPACES))
def test_kl_old_new_is_per_sample_and_matches_closed_form(kind, float64_observations):
    action_space, use_sde = ACTION_SPACES[kind]
    policy = _tiny_policy(action_space, use_sde)
    obs = th.randn(11, 3, dtype=th.float64, generator=th.Generator().manual_seed(3))
    old = detached_distribution(policy.get_distribution(obs))
    with th.no_grad():
        for param in policy.parameters():
            param.add_(0.1 * th.randn_like(param))
    new = policy.get_distribution(obs)
    kl = kl_old_new(old, new)
    # One KL per sample (not summed over the batch, not averaged over action dimensions)
    assert kl.shape == (11,)
    assert (kl >= 0).all()
    assert th.allclose(kl.mean(), reference_mean_kl(old, new), rtol=1e-10)


def test_fisher_is_not_a_gradient_outer_product(float64_observations):
    """The Fisher product must be a true Hessian-vector product: it differs from (g g^T) v for the surrogate's g."""
    policy = _tiny_policy(spaces.Discrete(3), False)
    obs = th.randn(7, 3, dtype=th.float64, generator=th.Generator().manual_seed(1))
    actor, _ = actor_critic_parameters(policy)
    distribution = policy.get_distribution(obs)
    kl = kl_old_new(detached_distribution(distribution), distribution).mean()
    kl_grad = flat_grad(kl, actor, create_graph=True)
    v = th.randn(kl_grad.shape[0], dtype=th.float64, generator=th.Generator().manual_seed(2))
    fvp = fisher_vector_product(kl_grad, actor, v, damping=0.0)
    # Curvature along v is positive: v^T F v > 0
    assert float(th.dot(v, fvp)) > 0


def test_detached_distribution_is_frozen(float64_observations):
    policy = _tiny_policy(spaces.Box(-1, 1, (2,)), False)
    obs = th.randn(4, 3, dtype=th.float64)
    distribution = policy.get_distribution(obs)
    snapshot = detached_distribution(distribution)
    mean_before = snapshot.distribution.mean.clone()
    assert not snapshot.distribution.mean.requires_grad
    # A later forward pass mutates SB3's shared wrapper, but not the snapshot
    policy.get_distribution(th.randn(9, 3, dtype=th.float64))
    assert distribution.distribution.mean.shape == (9, 2)
    assert th.equal(snapshot.distribution.mean, mean_before)


def test_kl_is_summed_over_action_dimensions(float64_observations):
    """KL of the joint distribution: for independent dims it is the sum of the per-dim KLs (not their mean)."""
    policy = _tiny_policy(spaces.Box(-1, 1, (2,)), False)
    obs = th.randn(4, 3, dtype=th.float64)
    old = detached_distribution(policy.get_distribution(obs))
    with th.no_grad():
        policy.log_std.add_(th.tensor([0.1, -0.2], dtype=th.float64))
    new = policy.get_distribution(obs)
    p, q = old.distribution, new.distribution
    expected = (th.log(q.scale / p.scale) + (p.scale**2 + (p.loc - q.loc) ** 2) / (2 * q.scale**2) - 0.5).sum(dim=1)
    assert th.allclose(kl_old_new(old, new), expected)


# ---------------------------------------------------------------------------------------------------------------------
# Step length and line search on a quadratic
# ---------------------------------------------------------------------------------------------------------------------


def test_max_step_length_puts_quadratic_kl_on_the_boundary():
    f = _random_spd(4, 5)
    s = th.randn(4, dtype=th.float64)
    target_kl = 0.01
    beta = max_step_length(s, f @ s, target_kl)
    step = beta * s
    assert math.isclose(0.5 * float(step @ f @ step), target_kl, rel_tol=1e-10)
    # No usable curvature: no step
    assert max_step_length(s, -s, target_kl) == 0.0
    assert max_step_length(th.zeros(4), th.zeros(4), target_kl) == 0.0
    assert max_step_length(s, th.full((4,), float("nan"), dtype=th.float64), target_kl) == 0.0


class QuadraticProblem:
    """Actor theta in R^2; surrogate L(theta) = c . (theta - theta_old) - 0.5 |theta - theta_old|^2 * curv;
    KL(theta) = 0.5 * (theta - theta_old)^T H (theta - theta_old)."""

    def __init__(self, full_step: th.Tensor, c: th.Tensor, curvature: float, h: th.Tensor) -> None:
        self.param = nn.Parameter(th.tensor([0.3, -1.7], dtype=th.float64))
        self.theta_old = get_flat_params([self.param])
        self.full_step, self.c, self.curvature, self.h = full_step, c, curvature, h
        self.evaluated: list[float] = []

    def surrogate(self, delta: th.Tensor) -> float:
        return float(self.c @ delta - 0.5 * self.curvature * delta @ delta)

    def kl(self, delta: th.Tensor) -> float:
        return float(0.5 * delta @ self.h @ delta)

    def evaluate(self, fraction: float) -> tuple[float, float]:
        self.evaluated.append(fraction)
        set_flat_params([self.param], self.theta_old + fraction * self.full_step)
        delta = get_flat_params([self.param]) - self.theta_old
        return self.surrogate(delta), self.kl(delta)


def test_line_search_accepts_first_fraction_satisfying_both_conditions():
    h = th.eye(2, dtype=th.float64)
    # Full step KL = 0.5 * 4 = 2 >> target; surrogate improves along the step for fractions < 2 / curvature
    problem = QuadraticProblem(th.tensor([2.0, 0.0], dtype=th.float64), th.tensor([1.0, 0.0], dtype=th.float64), 0.5, h)
    target_kl, shrink = 0.01, 0.5
    result = backtracking_line_search(problem.evaluate, 0.0, target_kl, shrink, max_iter=20)
    # Analytic answer: first j with 0.5 * (2 * 0.5**j)**2 <= 0.01  ->  2 * 0.5**j <= sqrt(0.02)  ->  j = 4
    expected_j = next(j for j in range(20) if 0.5 * (2 * shrink**j) ** 2 <= target_kl)
    assert result.accepted
    assert result.n_backtracks == expected_j == 4
    assert result.fraction == shrink**expected_j
    assert result.kl <= target_kl
    assert result.surrogate > 0.0
    assert problem.evaluated == [shrink**j for j in range(expected_j + 1)]
    # The parameters are left at the accepted candidate
    assert th.equal(get_flat_params([problem.param]), problem.theta_old + result.fraction * problem.full_step)


def test_line_search_rejects_steps_that_do_not_improve_and_caller_restores_exactly():
    h = th.eye(2, dtype=th.float64)
    # The step points downhill: every candidate satisfies the KL test but lowers the surrogate
    problem = QuadraticProblem(th.tensor([0.01, 0.0], dtype=th.float64), th.tensor([-1.0, 0.0], dtype=th.float64), 0.0, h)
    result = backtracking_line_search(problem.evaluate, 0.0, target_kl=0.01, shrink=0.8, max_iter=7)
    assert not result.accepted
    assert result.n_backtracks == 7 and len(problem.evaluated) == 7
    assert result.fraction == 0.0 and result.kl == 0.0 and result.surrogate == 0.0
    # Parameters were moved by the candidates; restoring theta_old is bit for bit
    assert not th.equal(get_flat_params([problem.param]), problem.theta_old)
    set_flat_params([problem.param], problem.theta_old)
    assert th.equal(get_flat_params([problem.param]), problem.theta_old)


def test_line_search_kl_boundary_is_inclusive_and_nan_is_rejected():
    assert backtracking_line_search(lambda f: (1.0, 0.01), 0.0, 0.01, 0.5, 1).accepted
    assert not backtracking_line_search(lambda f: (1.0, 0.0100001), 0.0, 0.01, 0.5, 1).accepted
    assert not backtracking_line_search(lambda f: (float("nan"), 0.0), 0.0, 0.01, 0.5, 3).accepted
    assert not backtracking_line_search(lambda f: (1.0, float("nan")), 0.0, 0.01, 0.5, 3).accepted
    # Equal surrogate is not an improvement
    assert not backtracking_line_search(lambda f: (0.0, 0.0), 0.0, 0.01, 0.5, 3).accepted
