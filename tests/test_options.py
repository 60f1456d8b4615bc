"""TRPO's (and NPG's) options: entropy bonus, adaptive or scheduled trust-region radius, warm-started conjugate gradient."""

import math

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import set_random_seed

from sb3_trpo import NPG, TRPO
from sb3_trpo.common.natural_gradient import (
    RADIUS_BOUND,
    RADIUS_FACTOR,
    LineSearchResult,
    adapt_trust_region_radius,
    conjugate_gradient,
    entropy_regularized_surrogate,
    flat_grad,
)
from sb3_trpo.common.on_policy_ng import NaturalGradientAlgorithm
from conftest import LogRecorder

TINY = dict(net_arch=[8])
ALGOS = [TRPO, NPG]


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(ent_coef=-0.01), "ent_coef"),
        (dict(ent_coef=float("nan")), "ent_coef"),
        (dict(ent_coef=float("inf")), "ent_coef"),
        (dict(ent_coef="0.01"), "ent_coef"),
        (dict(ent_coef=True), "ent_coef"),
        (dict(adaptive_kl="yes"), "adaptive_kl"),
        (dict(adaptive_kl=1), "adaptive_kl"),
        (dict(cg_warm_start=None), "cg_warm_start"),
    ],
)
def test_bad_option_raises_value_error_naming_it(algo, kwargs, argument) -> None:
    with pytest.raises(ValueError, match=rf"`{argument}` must be"):
        algo("MlpPolicy", "Pendulum-v1", **kwargs)


@pytest.mark.parametrize("algo", ALGOS)
def test_options_are_keyword_only_and_off_by_default(algo) -> None:
    import inspect

    parameters = inspect.signature(algo.__init__).parameters
    for name, default in (("ent_coef", 0.0), ("adaptive_kl", False), ("cg_warm_start", False)):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY and parameters[name].default == default


# ---------------------------------------------------------------------------------------------------------------------
# Entropy bonus
# ---------------------------------------------------------------------------------------------------------------------


def _explicit_objective(model: NaturalGradientAlgorithm, batch, old_log_prob: th.Tensor, ent_coef: float) -> th.Tensor:
    # L(theta) + c * mean(H) from the policy's layers and torch's own distributions, not SB3's wrappers
    policy = model.policy
    features = policy.extract_features(batch.observations, policy.pi_features_extractor)
    output = policy.action_net(policy.mlp_extractor.forward_actor(features))
    if isinstance(model.action_space, IdentityEnvBox(-1, 1).action_space.__class__):
        std = th.ones_like(output) * policy.log_std.exp()
        log_prob = th.distributions.Normal(output, std).log_prob(batch.actions).sum(dim=1)
        # H(N(mu, sigma)) = 0.5 + 0.5 log(2 pi) + log sigma, per dimension
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + th.log(std)).sum(dim=1)
    else:
        log_probs = th.log_softmax(output, dim=-1)
        log_prob = log_probs.gather(1, batch.actions.long().view(-1, 1)).squeeze(1)
        entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return (th.exp(log_prob - old_log_prob) * batch.advantages).mean() + ent_coef * entropy.mean()


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("env_fn", [lambda: IdentityEnvBox(-1, 1), lambda: IdentityEnv(4)], ids=["gaussian", "categorical"])
def test_entropy_bonus_gradient_equals_autograd(algo, env_fn) -> None:
    ent_coef = 0.05
    model = algo("MlpPolicy", env_fn(), n_steps=64, batch_size=32, ent_coef=ent_coef, policy_kwargs=TINY, seed=0)
    model.learn(64)
    batch = model._policy_batch()
    objective = model._policy_objective(batch)
    explicit = _explicit_objective(model, batch, objective.old_log_prob, ent_coef)
    assert float(explicit.detach()) == pytest.approx(objective.value, rel=1e-5, abs=1e-6)
    expected = flat_grad(explicit, model.actor_params)
    assert th.allclose(objective.gradient, expected, rtol=1e-4, atol=1e-6)
    # The bonus changes the gradient: without it, g differs by ent_coef * grad(mean H)
    without = flat_grad(_explicit_objective(model, batch, objective.old_log_prob, 0.0), model.actor_params)
    assert not th.allclose(without, expected, atol=1e-6)
    # The step's checks see the same objective: at theta_old, _policy_terms gives L(theta_old) + c * H
    terms, kl = model._policy_terms(batch, objective.old_log_prob, objective.old_distribution)
    assert float(terms.detach()) == pytest.approx(objective.value, rel=1e-6, abs=1e-7) and float(kl) == pytest.approx(
        0.0, abs=1e-7
    )


def test_entropy_regularized_surrogate_is_the_surrogate_without_the_bonus() -> None:
    log_prob, old_log_prob, advantages = th.randn(16), th.randn(16), th.randn(16)
    entropy = th.rand(16)
    plain = entropy_regularized_surrogate(log_prob, old_log_prob, advantages, None, 0.0)
    assert th.equal(plain, (th.exp(log_prob - old_log_prob) * advantages).mean())
    bonus = entropy_regularized_surrogate(log_prob, old_log_prob, advantages, entropy, 0.1)
    assert float(bonus - plain) == pytest.approx(0.1 * float(entropy.mean()), rel=1e-6)
    with pytest.raises(ValueError, match="ent_coef"):
        entropy_regularized_surrogate(log_prob, old_log_prob, advantages, None, 0.1)


def test_entropy_bonus_raises_the_entropy() -> None:
    # Same seed, same data: the bonus makes the Gaussian's std larger after training than without it
    stds = []
    for ent_coef in (0.0, 0.5):
        model = TRPO(
            "MlpPolicy", IdentityEnvBox(-1, 1), n_steps=64, batch_size=32, ent_coef=ent_coef, policy_kwargs=TINY, seed=0
        )
        model.learn(640)
        stds.append(float(model.policy.log_std.exp().mean()))
    assert stds[1] > stds[0]


# ---------------------------------------------------------------------------------------------------------------------
# Adaptive radius
# ---------------------------------------------------------------------------------------------------------------------


def _step(accepted: bool, fraction: float, kl: float) -> LineSearchResult:
    return LineSearchResult(accepted, fraction if accepted else 0.0, 0, kl if accepted else 0.0, 0.0)


def test_adaptive_rule_on_a_scripted_sequence() -> None:
    target_kl = 0.01
    f, b = RADIUS_FACTOR, RADIUS_BOUND
    radius = target_kl
    script = [
        # (step, expected radius afterwards)
        (_step(True, 1.0, 0.002), target_kl * f),  # full step, KL well inside: grow
        (_step(True, 1.0, 0.014), target_kl * f),  # full step, KL near the radius (> radius / f): keep
        (_step(True, 0.8, 0.001), target_kl * f),  # backtracked: keep, however small the KL
        (_step(False, 0.0, 0.0), target_kl),  # line search failed: shrink
        (_step(False, 0.0, 0.0), target_kl / f),
        (_step(True, 1.0, 0.5), target_kl / f**2),  # KL above f * radius (NPG's overshoot): shrink
    ]
    for step, expected in script:
        radius = adapt_trust_region_radius(radius, target_kl, step)
        assert radius == pytest.approx(expected, rel=1e-12)
    # Bounded below by target_kl / b and above by b * target_kl
    for _ in range(50):
        radius = adapt_trust_region_radius(radius, target_kl, _step(False, 0.0, 0.0))
    assert radius == pytest.approx(target_kl / b)
    for _ in range(50):
        radius = adapt_trust_region_radius(radius, target_kl, _step(True, 1.0, 0.0))
    assert radius == pytest.approx(target_kl * b)


def test_adaptive_trpo_bounds_each_step_by_the_radius_it_used() -> None:
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=128, batch_size=64, adaptive_kl=True, policy_kwargs=TINY, seed=0)
    recorder = LogRecorder(model)
    model.learn(128 * 12)
    radii = recorder.values["train/target_kl_effective"]
    kls = recorder.values["train/kl_divergence_loss"]
    assert radii[0] == model.target_kl
    assert len(set(radii)) > 1, "the radius never adapted"
    for radius, kl in zip(radii, kls, strict=True):
        assert model.target_kl / RADIUS_BOUND - 1e-12 <= radius <= model.target_kl * RADIUS_BOUND + 1e-12
        assert kl <= radius
    # Each logged radius follows from the previous update by the rule
    successes = recorder.values["train/is_line_search_success"]
    backtracks = recorder.values["train/line_search_backtracks"]
    for index in range(1, len(radii)):
        accepted = bool(successes[index - 1])
        fraction = model.line_search_shrinking_factor ** backtracks[index - 1] if accepted else 0.0
        step = LineSearchResult(accepted, fraction, backtracks[index - 1], kls[index - 1], 0.0)
        assert adapt_trust_region_radius(radii[index - 1], model.target_kl, step) == radii[index]


def test_the_line_search_uses_the_effective_radius() -> None:
    # A larger effective radius admits steps whose KL exceeds target_kl (and stays within the effective one)
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=256, batch_size=64, adaptive_kl=True, policy_kwargs=TINY, seed=0)
    recorder = LogRecorder(model)
    model.learn(256)
    model.target_kl_effective = 10 * model.target_kl
    model.train()
    kl = recorder.values["train/kl_divergence_loss"][-1]
    assert recorder.values["train/target_kl_effective"][-1] == 10 * model.target_kl
    assert model.target_kl < kl <= 10 * model.target_kl


def test_without_adaptive_kl_the_radius_is_target_kl() -> None:
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=128, batch_size=64, policy_kwargs=TINY, seed=0)
    recorder = LogRecorder(model)
    model.learn(128 * 4)
    assert recorder.values["train/target_kl_effective"] == [model.target_kl] * 4
    assert model.target_kl_effective == model.target_kl
    # target_kl set on the model later is the radius (an adapted radius left from adaptive_kl=True is not)
    model.target_kl, model.target_kl_effective = 0.02, 0.5
    model.learn(128, reset_num_timesteps=False)
    assert recorder.values["train/target_kl_effective"][-1] == 0.02
    assert recorder.values["train/kl_divergence_loss"][-1] <= 0.02


# ---------------------------------------------------------------------------------------------------------------------
# A scheduled trust-region radius
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize(
    "target_kl",
    ["exp_0.1", "lin_0", "lin_-0.01", "lin_x", "0.01", 0, -0.01, float("nan"), float("inf"), True, None, [0.01],
     lambda progress: 0.0, lambda progress: "a", lambda: 0.01],
)  # fmt: skip
def test_bad_target_kl_raises_value_error_naming_it(algo, target_kl) -> None:
    with pytest.raises(ValueError, match=r"`target_kl` must be a number > 0, a schedule .*'lin_<value>'"):
        algo("MlpPolicy", "Pendulum-v1", target_kl=target_kl)


def test_a_schedule_and_adaptive_kl_are_refused_together() -> None:
    with pytest.raises(ValueError, match=r"`adaptive_kl` must be False when target_kl is a schedule"):
        TRPO("MlpPolicy", "Pendulum-v1", target_kl="lin_0.02", adaptive_kl=True)


@pytest.mark.parametrize("algo", ALGOS)
def test_a_scheduled_radius_is_read_at_each_update_and_bounds_each_step(algo) -> None:
    # The RL Zoo's "lin_0.03": 0.03 * progress_remaining, SB3's progress after each rollout (as for learning_rate)
    n_steps, n_updates = 128, 6
    model = algo("MlpPolicy", "Pendulum-v1", n_steps=n_steps, batch_size=64, target_kl="lin_0.03", policy_kwargs=TINY, seed=0)
    assert model.target_kl(1.0) == 0.03 and model.target_kl(0.25) == pytest.approx(0.0075)
    recorder = LogRecorder(model)
    model.learn(n_steps * n_updates)
    expected = [0.03 * (1 - (update + 1) / n_updates) for update in range(n_updates)]
    assert recorder.values["train/target_kl_effective"] == pytest.approx(expected, abs=1e-15)
    if algo is TRPO:  # every accepted step within the radius it used; none at radius 0 (the last update)
        for radius, kl in zip(expected, recorder.values["train/kl_divergence_loss"], strict=True):
            assert kl <= radius + 1e-12
    # A schedule given as a function: the same radii, the same parameters
    again = algo(
        "MlpPolicy", "Pendulum-v1", n_steps=n_steps, batch_size=64, target_kl=lambda progress: 0.03 * progress,
        policy_kwargs=TINY, seed=0,
    )  # fmt: skip
    again.learn(n_steps * n_updates)
    for a, b in zip(model.policy.parameters(), again.policy.parameters(), strict=True):
        assert th.allclose(a, b, rtol=0, atol=1e-6)


def test_a_constant_target_kl_keeps_the_update_unchanged() -> None:
    # A float and the constant schedule of the same value give the same parameters, bit for bit
    def run(target_kl):  # type: ignore[no-untyped-def]
        model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=128, batch_size=64, target_kl=target_kl, policy_kwargs=TINY, seed=0)
        return model.learn(128 * 3).policy.parameters()

    for a, b in zip(run(0.02), run(lambda progress: 0.02), strict=True):
        assert th.equal(a, b)


def test_a_scheduled_radius_round_trips_through_save_and_load(tmp_path) -> None:
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, target_kl="lin_0.02", policy_kwargs=TINY, seed=0)
    model.learn(128)
    model.save(tmp_path / "model")
    loaded = TRPO.load(tmp_path / "model")
    assert callable(loaded.target_kl) and loaded.target_kl(0.5) == model.target_kl(0.5) == 0.01
    assert loaded.target_kl_effective == model.target_kl_effective


# ---------------------------------------------------------------------------------------------------------------------
# Warm-started conjugate gradient
# ---------------------------------------------------------------------------------------------------------------------


def test_warm_started_cg_converges_to_the_same_solution_in_no_more_iterations() -> None:
    generator = th.Generator().manual_seed(1)
    n = 60
    q, _ = th.linalg.qr(th.randn(n, n, generator=generator, dtype=th.float64))
    matrix = q @ th.diag(th.logspace(-2, 1, n, dtype=th.float64)) @ q.T  # SPD, condition number 1e3
    g = th.randn(n, generator=generator, dtype=th.float64)
    # The previous update's direction: the solution for a nearby right-hand side
    previous = th.linalg.solve(matrix, g + 0.05 * th.randn(n, generator=generator, dtype=th.float64))
    cold = conjugate_gradient(lambda v: matrix @ v, g, max_iter=500, residual_tol=1e-20)
    warm = conjugate_gradient(lambda v: matrix @ v, g, max_iter=500, residual_tol=1e-20, x0=previous)
    exact = th.linalg.solve(matrix, g)
    assert cold.converged and warm.converged
    assert th.allclose(cold.x, exact, rtol=1e-7, atol=1e-9) and th.allclose(warm.x, exact, rtol=1e-7, atol=1e-9)
    assert warm.n_iter <= cold.n_iter
    # The tracked residual is still b - A x (the step length reads it)
    assert th.allclose(warm.residual, g - matrix @ warm.x, atol=1e-8)


@pytest.mark.parametrize("algo", ALGOS)
def test_cg_warm_start_keeps_the_previous_direction(algo, monkeypatch: pytest.MonkeyPatch) -> None:
    import sb3_trpo.common.on_policy_ng as core

    starts: list[th.Tensor | None] = []
    real = core.conjugate_gradient

    def recording(*args, x0=None, **kwargs):  # type: ignore[no-untyped-def]
        starts.append(None if x0 is None else x0.clone())
        result = real(*args, x0=x0, **kwargs)
        directions.append(result.x.clone())
        return result

    directions: list[th.Tensor] = []
    monkeypatch.setattr(core, "conjugate_gradient", recording)
    model = algo("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, cg_warm_start=True, policy_kwargs=TINY, seed=0)
    model.learn(64 * 3)
    assert starts[0] is None  # no previous direction yet: CG starts from zero
    assert th.equal(starts[1], directions[0]) and th.equal(starts[2], directions[1])
    assert th.equal(model._cg_previous_direction, directions[-1])
    starts.clear()
    algo("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0).learn(64 * 3)
    assert starts == [None, None, None]


# ---------------------------------------------------------------------------------------------------------------------
# Save / load: every option and every piece of state, so a resumed run continues exactly
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ALGOS)
def test_options_and_state_round_trip_and_resume_exactly(algo, tmp_path) -> None:
    options = dict(ent_coef=0.02, adaptive_kl=True, cg_warm_start=True)

    def make():  # type: ignore[no-untyped-def]
        return algo(
            "MlpPolicy",
            IdentityEnvBox(-1, 1),
            n_steps=64,
            batch_size=32,
            target_kl=0.005,
            policy_kwargs=TINY,
            seed=5,
            **options,
        )

    model = make()
    model.learn(64 * 3)
    # A radius away from target_kl, as adaptation leaves it (then the next update reads it)
    model.target_kl_effective = model.target_kl * RADIUS_FACTOR**2
    assert bool(model._cg_previous_direction.any())
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", env=IdentityEnvBox(-1, 1))
    for name, value in options.items():
        assert getattr(loaded, name) == value
    assert loaded.target_kl_effective == model.target_kl_effective
    assert th.equal(loaded._cg_previous_direction, model._cg_previous_direction)
    # The same next update on the same batch, same RNG: identical parameters and state
    loaded.rollout_buffer = model.rollout_buffer
    for each in (model, loaded):
        each.set_logger(configure(None, []))
        set_random_seed(0)
        each.train()
    for a, b in zip(model.policy.parameters(), loaded.policy.parameters(), strict=True):
        assert th.equal(a, b)
    assert loaded.target_kl_effective == model.target_kl_effective
    assert th.equal(loaded._cg_previous_direction, model._cg_previous_direction)


def test_saved_file_holds_no_derived_attributes(tmp_path) -> None:
    import json
    import zipfile

    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, cg_warm_start=True, policy_kwargs=TINY, seed=0)
    model.learn(64)
    model.save(tmp_path / "model")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        data = json.loads(archive.read("data"))
        assert "pytorch_variables.pth" in archive.namelist()
    assert not set(NaturalGradientAlgorithm._derived_attributes) & data.keys()
    assert {"ent_coef", "adaptive_kl", "cg_warm_start", "target_kl_effective"} <= data.keys()
    np.testing.assert_array_equal(
        TRPO.load(tmp_path / "model")._cg_previous_direction.numpy(), model._cg_previous_direction.numpy()
    )
