"""TRPO as an SB3 algorithm: spaces x policies x gSDE x sub-sampling, the trust region over the whole update,
the revert path, logger keys and input validation."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.vec_env import VecNormalize

import sb3_trpo.trpo.trpo
from sb3_trpo import NPG, TRPO
from sb3_trpo.common.natural_gradient import backtracking_line_search, detached_distribution, get_flat_params, kl_old_new

TINY = dict(net_arch=[16])


@pytest.mark.parametrize(
    "env_fn",
    [
        lambda: IdentityEnv(4),
        lambda: IdentityEnvBox(-1, 1),
        lambda: IdentityEnvMultiDiscrete(3),
        lambda: IdentityEnvMultiBinary(3),
    ],
    ids=["discrete", "box", "multidiscrete", "multibinary"],
)
@pytest.mark.parametrize("sub_sampling_factor", [1, 4])
@pytest.mark.parametrize("algo", [TRPO, NPG])
def test_action_spaces(algo, env_fn, sub_sampling_factor):
    model = algo(
        "MlpPolicy", env_fn(), n_steps=64, batch_size=32, sub_sampling_factor=sub_sampling_factor, policy_kwargs=TINY, seed=0
    )
    model.learn(128)
    assert model._n_updates == 2


@pytest.mark.parametrize("env_id,use_sde", [("Pendulum-v1", False), ("Pendulum-v1", True), ("CartPole-v1", False)])
def test_classic_control(env_id, use_sde):
    model = TRPO(
        "MlpPolicy", env_id, n_steps=128, batch_size=64, use_sde=use_sde, sde_sample_freq=4, policy_kwargs=TINY, seed=0
    )
    model.learn(256)


@pytest.mark.parametrize("share_features_extractor", [True, False])
@pytest.mark.parametrize("discrete", [True, False])
def test_cnn_policy(share_features_extractor, discrete):
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=discrete)
    policy_kwargs = dict(
        net_arch=[16], features_extractor_kwargs=dict(features_dim=16), share_features_extractor=share_features_extractor
    )
    model = TRPO("CnnPolicy", env, n_steps=32, batch_size=16, policy_kwargs=policy_kwargs, seed=0)
    model.learn(64)


@pytest.mark.parametrize("share_features_extractor", [True, False])
def test_multi_input_policy(share_features_extractor):
    env = SimpleMultiObsEnv(random_start=True)
    policy_kwargs = dict(net_arch=[16], share_features_extractor=share_features_extractor)
    model = TRPO("MultiInputPolicy", env, n_steps=32, batch_size=16, policy_kwargs=policy_kwargs, seed=0)
    model.learn(64)


class SingleBoxDict(gym.ObservationWrapper):
    """The env's Box observation as the only entry of a Dict observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({"state": env.observation_space})

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        return {"state": observation}


@pytest.mark.parametrize("algo", [TRPO, NPG])
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("share_features_extractor", [True, False])
def test_dict_of_one_box_gives_the_same_update_as_the_box(algo, env_id, share_features_extractor):
    # SB3's test_dict_env.py::test_consistency: a MultiInputPolicy on a Dict holding one Box and an MlpPolicy on the
    # flattened Box are the same network. Both take the same (closed-form) path here, so the same update, bit for bit.
    dict_env = SingleBoxDict(gym.make(env_id))
    observation, _ = dict_env.reset(seed=0)
    policy_kwargs = dict(net_arch=[16], share_features_extractor=share_features_extractor)
    kwargs = dict(n_steps=128, batch_size=64, policy_kwargs=policy_kwargs, seed=1)
    dict_model = algo("MultiInputPolicy", dict_env, **kwargs).learn(384)
    flat_model = algo("MlpPolicy", gym.wrappers.FlattenObservation(dict_env), **kwargs).learn(384)
    for dict_param, flat_param in zip(dict_model.policy.parameters(), flat_model.policy.parameters(), strict=True):
        assert th.equal(dict_param, flat_param)
    dict_action, _ = dict_model.predict(observation, deterministic=True)
    flat_action, _ = flat_model.predict(observation["state"], deterministic=True)
    np.testing.assert_array_equal(dict_action, flat_action)


def test_vec_normalize_and_multiple_envs():
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = TRPO("MlpPolicy", env, n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(256)
    assert model.num_timesteps == 256


def test_swap_for_ppo_keeps_the_script():
    """The same call that works for PPO (policy name, env id, common kwargs, callbacks, progress bar) works for TRPO."""
    from stable_baselines3 import PPO

    common = dict(n_steps=64, batch_size=32, gamma=0.98, gae_lambda=0.9, policy_kwargs=TINY, seed=1)
    for algo in (PPO, TRPO):
        algo("MlpPolicy", "CartPole-v1", **common).learn(128, progress_bar=True)


# ---------------------------------------------------------------------------------------------------------------------
# The trust region bounds the whole update
# ---------------------------------------------------------------------------------------------------------------------


class TrustRegionMonitor(BaseCallback):
    """Before each train(): snapshot pi_old on the rollout. After it: KL(pi_old || pi_new) on the same batch."""

    def __init__(self) -> None:
        super().__init__()
        self.kls: list[float] = []
        self.logged_kls: list[float] = []
        self.accepted: list[bool] = []
        self._snapshot = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        data = next(self.model.rollout_buffer.get(batch_size=None))
        with th.no_grad():
            old = detached_distribution(self.model.policy.get_distribution(data.observations))
        self._snapshot = (data.observations, old, get_flat_params(self.model.actor_params))

    def _check(self) -> None:
        if self._snapshot is None:
            return
        observations, old, old_actor = self._snapshot
        with th.no_grad():
            kl = kl_old_new(old, self.model.policy.get_distribution(observations)).mean()
        self.kls.append(float(kl))
        self.logged_kls.append(self.model.logger.name_to_value["train/kl_divergence_loss"])
        accepted = bool(self.model.logger.name_to_value["train/is_line_search_success"])
        self.accepted.append(accepted)
        if not accepted:
            assert th.equal(get_flat_params(self.model.actor_params), old_actor)
        self._snapshot = None

    def _on_rollout_start(self) -> None:
        self._check()

    def _on_training_end(self) -> None:
        self._check()


@pytest.mark.parametrize(
    "env_id,kwargs",
    [
        ("Pendulum-v1", dict(n_steps=256, gamma=0.9, use_sde=True, sde_sample_freq=4)),
        ("Pendulum-v1", dict(n_steps=256, target_kl=0.05, sub_sampling_factor=4)),
        ("CartPole-v1", dict(n_steps=256, cg_damping=1e-3, gae_lambda=0.98)),
        ("CartPole-v1", dict(n_steps=256, target_kl=0.1, line_search_shrinking_factor=0.5)),
    ],
)
def test_kl_after_every_update_is_within_target(env_id, kwargs):
    env = make_vec_env(env_id, n_envs=2, seed=0)
    model = TRPO("MlpPolicy", env, batch_size=128, seed=0, **kwargs)
    monitor = TrustRegionMonitor()
    # log_interval larger than the number of updates: the logger keeps the last values for the monitor to read
    model.learn(512 * 8, callback=monitor, log_interval=1000)
    assert len(monitor.kls) == 8
    target_kl = model.target_kl
    for kl, logged, accepted in zip(monitor.kls, monitor.logged_kls, monitor.accepted, strict=True):
        # The KL of the policy after the whole train() (critic epochs included), recomputed from scratch
        assert kl <= target_kl
        if accepted:
            assert kl > 0.0
            assert np.isclose(kl, logged, rtol=1e-5, atol=1e-9)
        else:
            assert kl == 0.0
    assert np.mean(monitor.accepted) >= 0.5


def test_failed_line_search_restores_actor_exactly_and_still_fits_critic(monkeypatch):
    calls = []

    def always_failing_line_search(evaluate, old_surrogate, target_kl, shrink, max_iter):
        # Run the real search but demand an impossible improvement: every candidate moves the parameters, none passes
        result = backtracking_line_search(evaluate, float("inf"), target_kl, shrink, max_iter)
        calls.append(result)
        return result

    monkeypatch.setattr(sb3_trpo.trpo.trpo, "backtracking_line_search", always_failing_line_search)
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=128, batch_size=64, policy_kwargs=TINY, seed=0)
    actor_before = get_flat_params(model.actor_params)
    critic_before = get_flat_params(model.critic_params)
    model.learn(256, log_interval=1000)
    assert len(calls) == 2 and not any(result.accepted for result in calls)
    assert th.equal(get_flat_params(model.actor_params), actor_before)
    assert not th.equal(get_flat_params(model.critic_params), critic_before)
    assert model.logger.name_to_value["train/is_line_search_success"] == 0.0
    assert model.logger.name_to_value["train/kl_divergence_loss"] == 0.0
    assert model.logger.name_to_value["train/line_search_backtracks"] == model.line_search_max_iter


def test_zero_advantages_take_no_step():
    """All-equal advantages: zero gradient, no direction to size; the actor stays put and the update is counted."""
    model = TRPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(64)
    model.rollout_buffer.advantages[:] = 1.0
    actor_before = get_flat_params(model.actor_params)
    model.train()
    assert th.equal(get_flat_params(model.actor_params), actor_before)
    assert model.logger.name_to_value["train/is_line_search_success"] == 0.0
    assert model.logger.name_to_value["train/max_step_length"] == 0.0
    assert th.isfinite(get_flat_params(model.policy.parameters())).all()


def test_logger_keys():
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(64, log_interval=1000)
    keys = set(model.logger.name_to_value)
    expected = {
        # sb3-contrib's keys
        "train/policy_objective",
        "train/value_loss",
        "train/kl_divergence_loss",
        "train/is_line_search_success",
        "train/explained_variance",
        "train/std",
        "train/n_updates",
        "train/learning_rate",
        # our diagnostics
        "train/line_search_backtracks",
        "train/max_step_length",
        "train/cg_iterations",
        "train/cg_residual",
        "train/surrogate_improvement",
    }
    assert expected <= keys
    assert all(np.isfinite(model.logger.name_to_value[key]) for key in expected)
    # No std for a categorical policy
    model = TRPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(64, log_interval=1000)
    assert "train/std" not in model.logger.name_to_value


def test_critic_learning_rate_schedule_and_value_loss_decreases():
    model = TRPO(
        "MlpPolicy",
        "Pendulum-v1",
        n_steps=256,
        batch_size=64,
        n_critic_updates=1,
        learning_rate=lambda progress: 1e-4 + 1e-3 * progress,
        policy_kwargs=TINY,
        seed=0,
    )
    model.learn(256, log_interval=1000)
    first_loss = model.logger.name_to_value["train/value_loss"]
    # Same batch again, many more critic epochs: the regression loss must go down
    model.n_critic_updates = 30
    model.train()
    assert model.logger.name_to_value["train/value_loss"] < first_loss
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 + 1e-3 * model._current_progress_remaining)


def test_critic_optimizer_holds_critic_parameters_only():
    model = TRPO(
        "CnnPolicy",
        FakeImageEnv(screen_height=36, screen_width=36, n_channels=1),
        n_steps=16,
        batch_size=8,
        policy_kwargs=dict(net_arch=[8], features_extractor_kwargs=dict(features_dim=8)),
        seed=0,
    )
    optimized = {id(param) for group in model.policy.optimizer.param_groups for param in group["params"]}
    assert optimized == {id(param) for param in model.critic_params}
    assert optimized.isdisjoint({id(param) for param in model.actor_params})
    # The shared CNN is the actor's
    assert {id(param) for param in model.policy.features_extractor.parameters()} <= {id(p) for p in model.actor_params}


# ---------------------------------------------------------------------------------------------------------------------
# Constructor: sb3-contrib compatibility and validation
# ---------------------------------------------------------------------------------------------------------------------


def test_constructor_matches_sb3_contrib_signature():
    import inspect

    from sb3_contrib import TRPO as ContribTRPO

    ours = inspect.signature(TRPO.__init__).parameters
    theirs = inspect.signature(ContribTRPO.__init__).parameters
    # Same names, same order, same defaults (ours may add keyword-only arguments at the end)
    positional = [name for name, p in ours.items() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert positional == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].default == parameter.default, name


@pytest.mark.parametrize("name", ["TRPO", "NPG", "MaskableTRPO", "RecurrentTRPO", "MaskableRecurrentTRPO"])
def test_class_signature_is_the_constructors(name):
    # What inspect.signature, help() and the API docs show: __init__'s arguments, not __new__'s (*args, **kwargs)
    import inspect

    import sb3_trpo

    algorithm = getattr(sb3_trpo, name)
    expected = list(inspect.signature(algorithm.__init__).parameters.values())[1:]
    assert list(inspect.signature(algorithm).parameters.values()) == expected
    assert "policy" in inspect.signature(algorithm).parameters


def test_contrib_config_runs_unchanged():
    config = dict(
        n_steps=64,
        batch_size=32,
        gamma=0.99,
        cg_max_steps=10,
        cg_damping=0.01,
        line_search_shrinking_factor=0.7,
        line_search_max_iter=5,
        n_critic_updates=3,
        gae_lambda=0.9,
        normalize_advantage=True,
        target_kl=0.02,
        sub_sampling_factor=2,
        stats_window_size=10,
        policy_kwargs=dict(net_arch=dict(pi=[16], vf=[16])),
        verbose=0,
        seed=3,
        device="cpu",
    )
    TRPO("MlpPolicy", "CartPole-v1", 1e-3, **config).learn(64)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(target_kl=0.0), "target_kl"),
        (dict(target_kl=-0.01), "target_kl"),
        (dict(target_kl=float("nan")), "target_kl"),
        (dict(cg_max_steps=0), "cg_max_steps"),
        (dict(cg_damping=-0.1), "cg_damping"),
        (dict(line_search_shrinking_factor=0.0), "line_search_shrinking_factor"),
        (dict(line_search_shrinking_factor=1.0), "line_search_shrinking_factor"),
        (dict(line_search_max_iter=0), "line_search_max_iter"),
        (dict(n_critic_updates=0), "n_critic_updates"),
        (dict(sub_sampling_factor=0), "sub_sampling_factor"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_hyperparameters_raise_value_error_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}` must be"):
        TRPO("MlpPolicy", "CartPole-v1", **kwargs)


def test_sb3_errors_are_kept():
    # Same AssertionError as SB3 / sb3-contrib for a one-sample buffer with advantage normalization
    with pytest.raises(AssertionError, match="n_steps \\* n_envs"):
        TRPO("MlpPolicy", "CartPole-v1", n_steps=1)
    TRPO("MlpPolicy", "CartPole-v1", n_steps=1, normalize_advantage=False, batch_size=1)
    # Same UserWarning for a truncated mini-batch
    with pytest.warns(UserWarning, match="truncated mini-batch"):
        TRPO("MlpPolicy", "CartPole-v1", n_steps=100, batch_size=64)
    # Unsupported action space: SB3's own AssertionError
    with pytest.raises(AssertionError, match="only supports"):
        TRPO("MlpPolicy", DictActionEnv())


class DictActionEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Dict({"a": gym.spaces.Discrete(2)})

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}
