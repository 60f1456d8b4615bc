"""NPG: the shared natural-gradient core with the full step and no line search."""

import copy
import inspect

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import set_random_seed

from sb3_trpo import NPG, TRPO
from sb3_trpo.common.natural_gradient import conjugate_gradient, get_flat_params, max_step_length
from sb3_trpo.common.on_policy_ng import NaturalGradientAlgorithm
from conftest import LogRecorder

TINY = dict(net_arch=[8])


def test_constructor_is_trpos_minus_the_line_search() -> None:
    trpo = inspect.signature(TRPO.__init__).parameters
    npg = inspect.signature(NPG.__init__).parameters
    line_search = {"line_search_shrinking_factor", "line_search_max_iter"}
    assert list(npg) == [name for name in trpo if name not in line_search]
    for name, parameter in npg.items():
        assert parameter.default == trpo[name].default and parameter.kind == trpo[name].kind, name
    assert NPG.policy_aliases.keys() == TRPO.policy_aliases.keys()
    assert issubclass(NPG, NaturalGradientAlgorithm) and issubclass(TRPO, NaturalGradientAlgorithm)
    assert not issubclass(TRPO, NPG) and not issubclass(NPG, TRPO)
    with pytest.raises(TypeError):
        NPG("MlpPolicy", "Pendulum-v1", line_search_max_iter=3)  # type: ignore[call-arg]


def test_step_length_reaches_target_kl_on_a_quadratic_kl() -> None:
    # KL(theta_old + d) = 0.5 d^T (F + damping I) d exactly (a quadratic model with a dense Fisher): NPG's full step
    # beta * s, s = (F + damping I)^-1 g by CG, lands on KL = target_kl
    generator = th.Generator().manual_seed(0)
    n, damping, target_kl = 12, 0.05, 0.02
    m = th.randn(n, n, generator=generator, dtype=th.float64)
    fisher = m @ m.T / n + 1e-3 * th.eye(n, dtype=th.float64)
    damped = fisher + damping * th.eye(n, dtype=th.float64)
    g = th.randn(n, generator=generator, dtype=th.float64)
    cg = conjugate_gradient(lambda v: damped @ v, g, max_iter=200, residual_tol=1e-24)
    assert th.allclose(cg.x, th.linalg.solve(damped, g), rtol=1e-8, atol=1e-10)
    beta = max_step_length(cg.x, g - cg.residual, target_kl)
    step = beta * cg.x
    assert float(0.5 * step @ damped @ step) == pytest.approx(target_kl, rel=1e-9)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_npg_step_reaches_target_kl_at_the_quadratic_model(env_id: str) -> None:
    # On a real policy: the full step's damped quadratic KL 0.5 beta^2 s^T (F + damping I) s is target_kl, and for a
    # small radius the KL actually reached (what is logged) is the undamped quadratic model's 0.5 beta^2 s^T F s
    target_kl = 1e-4
    model = NPG("MlpPolicy", env_id, n_steps=256, batch_size=64, target_kl=target_kl, policy_kwargs=TINY, seed=0)
    model.learn(256)  # fills the rollout buffer (and takes one update)
    batch = model._policy_batch()
    objective = model._policy_objective(batch)
    cg = model._search_direction(batch, objective)
    fvp = model._fisher_vector_product(batch, objective.distribution, objective.old_distribution)
    damped_curvature = float(cg.x @ fvp(cg.x))
    beta = max_step_length(cg.x, objective.gradient - cg.residual, target_kl)
    assert 0.5 * beta**2 * damped_curvature == pytest.approx(target_kl, rel=1e-3)
    undamped_model = 0.5 * beta**2 * (damped_curvature - model.cg_damping * float(cg.x @ cg.x))
    step = model._apply_step(batch, objective, beta * cg.x, target_kl)
    assert step.accepted and step.fraction == 1.0
    assert step.kl == pytest.approx(undamped_model, rel=0.05)
    assert step.kl <= target_kl * 1.05


@pytest.mark.parametrize("env_fn", [lambda: IdentityEnv(3), lambda: IdentityEnvBox(-1, 1)], ids=["discrete", "box"])
def test_npg_equals_trpo_when_the_line_search_accepts_the_full_step(env_fn) -> None:
    # Same core: when TRPO's line search accepts its first candidate, its update is NPG's, bit for bit
    models: list[NaturalGradientAlgorithm] = []
    recorders = []
    for cls in (TRPO, NPG):
        # Built and trained in turn: the seed sets the global RNGs at construction
        model = cls("MlpPolicy", env_fn(), n_steps=64, batch_size=32, target_kl=1e-4, policy_kwargs=TINY, seed=3)
        model.set_logger(configure(None, []))
        recorders.append(LogRecorder(model))
        models.append(model.learn(64))
    assert recorders[0].values["train/line_search_backtracks"] == [0]
    for a, b in zip(models[0].policy.parameters(), models[1].policy.parameters(), strict=True):
        assert th.equal(a, b)


def test_npg_takes_the_full_step_even_when_the_surrogate_falls(monkeypatch: pytest.MonkeyPatch) -> None:
    # No improvement check: the step is the full step whatever the objective there (TRPO would reject it)
    model = NPG("MlpPolicy", IdentityEnvBox(-1, 1), n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(64)
    before = get_flat_params(model.actor_params)
    real_terms = model._policy_terms

    def worse(*args):  # type: ignore[no-untyped-def]
        objective, kl = real_terms(*args)
        return objective - 1e3, kl

    monkeypatch.setattr(model, "_policy_terms", worse)
    model.set_logger(configure(None, []))
    recorder = LogRecorder(model)
    model.train()
    assert not th.equal(get_flat_params(model.actor_params), before)
    assert recorder.values["train/policy_objective"][0] < -100
    assert "train/is_line_search_success" not in recorder.values


def test_non_finite_step_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    model = NPG("MlpPolicy", IdentityEnvBox(-1, 1), n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(64)
    before = get_flat_params(model.actor_params)
    monkeypatch.setattr(model, "_policy_terms", lambda *args: (th.tensor(float("nan")), th.tensor(float("nan"))))
    model.train()
    assert th.equal(get_flat_params(model.actor_params), before)


@pytest.mark.parametrize("env_fn", [lambda: IdentityEnv(4), lambda: IdentityEnvBox(-1, 1)], ids=["discrete", "box"])
def test_save_load_predicts_the_same(env_fn, tmp_path) -> None:
    model = NPG("MlpPolicy", env_fn(), n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0).learn(128)
    assert model._n_updates == 2
    observations = np.stack([model.observation_space.sample() for _ in range(8)])
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "npg")
    loaded = NPG.load(tmp_path / "npg")
    assert type(loaded) is NPG
    np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0], actions)


def test_npg_is_deterministic_for_a_seed() -> None:
    def run() -> th.Tensor:
        set_random_seed(0)
        model = NPG("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=7, use_sde=True)
        model.learn(192)
        return get_flat_params(list(model.policy.parameters()))

    assert th.equal(run(), run())


def test_a_line_search_argument_names_npg_and_says_it_has_no_line_search() -> None:
    for name in ("line_search_max_iter", "line_search_shrinking_factor"):
        with pytest.raises(TypeError, match=rf"^NPG\(\): got an unexpected keyword argument '{name}' NPG has no line search"):
            NPG("MlpPolicy", "CartPole-v1", **{name: 5})


@pytest.mark.parametrize("name", ["TRPO", "NPG", "MaskableTRPO", "RecurrentTRPO", "MaskableRecurrentTRPO"])
def test_an_unknown_argument_names_the_class_the_user_called(name: str) -> None:
    import sb3_trpo

    algorithm = getattr(sb3_trpo, name)
    policy = "MlpLstmPolicy" if "Recurrent" in name else "MlpPolicy"
    with pytest.raises(TypeError, match=rf"^{name}\(\): got an unexpected keyword argument 'n_epochs'$"):
        algorithm(policy, "CartPole-v1", n_epochs=10)
    # copy and pickle build instances with no arguments
    model = algorithm(policy, "CartPole-v1", n_steps=64, batch_size=64)
    assert type(copy.copy(model)) is algorithm
