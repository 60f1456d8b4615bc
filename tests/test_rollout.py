"""
The rollout paths of sb3_trpo.common.rollout: the bound torch forward equals SB3's policy.forward bit for bit; the
project's loop fills the same buffer as SB3's collect_rollouts, sb3-contrib's RecurrentPPO's and MaskablePPO's bit for
bit on the same seed and weights (with the NumPy forward, to float tolerance), keeping SB3's callback contract;
learning is unchanged. The bound predict equals SB3's predict bit for bit. Nothing is left on the policy.
"""

import io
import sys
import threading

import gymnasium as gym

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize
from torch import nn

import sb3_trpo.common.on_policy_ng
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete

from sb3_trpo import TRPO, MaskableTRPO, RecurrentTRPO
from sb3_trpo.common.rollout import bind_numpy_forward, bind_policy_actions, bind_rollout_forward, predict_with

BOX_OBS = spaces.Box(-np.inf, np.inf, (5,), np.float32)


@pytest.mark.parametrize(
    "observation_space,action_space,policy_kwargs",
    [
        (BOX_OBS, spaces.Box(-1, 1, (3,)), {}),
        (BOX_OBS, spaces.Box(-1, 1, (2, 2)), dict(net_arch=[16], activation_fn=nn.ReLU)),
        (BOX_OBS, spaces.Box(-1, 1, (1,)), dict(net_arch=[], log_std_init=-0.7)),
        (BOX_OBS, spaces.Discrete(4), dict(net_arch=dict(pi=[8, 8], vf=[4]))),
        (spaces.Box(-1, 1, (2, 3), np.float64), spaces.Discrete(2), dict(share_features_extractor=False)),
    ],
)
@pytest.mark.parametrize("deterministic", [False, True])
def test_bound_forward_equals_policy_forward(observation_space, action_space, policy_kwargs, deterministic):
    th.manual_seed(0)
    policy = ActorCriticPolicy(observation_space, action_space, lambda _: 1e-3, **policy_kwargs)
    with th.no_grad():
        # Non-trivial weights (SB3's init gives the action head tiny weights)
        for param in policy.parameters():
            param.add_(0.3 * th.randn_like(param))
    forward = bind_rollout_forward(policy)
    assert forward is not None
    obs = th.as_tensor(np.stack([observation_space.sample() for _ in range(7)]))
    with th.no_grad():
        th.manual_seed(1)
        expected = policy(obs, deterministic=deterministic)
        th.manual_seed(1)
        actual = forward(obs, deterministic=deterministic)
    for got, want in zip(actual, expected, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        assert th.equal(got, want)


@pytest.mark.parametrize(
    "action_space,policy_kwargs",
    [
        (spaces.Box(-1, 1, (2,)), dict(use_sde=True)),  # gSDE
        (spaces.MultiDiscrete([2, 3]), {}),
        (spaces.MultiBinary(3), {}),
        (spaces.Box(-1, 1, (2,)), dict(activation_fn=nn.ELU)),
    ],
)
def test_bound_forward_declines_other_policies(action_space, policy_kwargs):
    policy = ActorCriticPolicy(BOX_OBS, action_space, lambda _: 1e-3, **policy_kwargs)
    assert bind_rollout_forward(policy) is None

    class Subclass(ActorCriticPolicy):  # may override forward: left alone
        pass

    assert bind_rollout_forward(Subclass(BOX_OBS, spaces.Discrete(2), lambda _: 1e-3)) is None


class _RaiseInside(BaseCallback):
    def _on_step(self) -> bool:
        raise RuntimeError("inside")


@pytest.mark.parametrize("numpy_forward", [True, False])
def test_the_rollout_leaves_the_policy_as_it_was_even_after_an_error(numpy_forward, monkeypatch):
    # The bound forwards are called by the loop itself: nothing is assigned onto the policy, even for a moment
    if not numpy_forward:
        monkeypatch.setattr(sb3_trpo.common.on_policy_ng, "bind_numpy_forward", lambda policy: None)
    model = TRPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0)
    assert bind_rollout_forward(model.policy) is not None
    policy = model.policy
    with pytest.raises(RuntimeError, match="inside"):
        model.learn(64, callback=_RaiseInside())
    assert "forward" not in vars(policy)
    assert policy.forward.__func__ is ActorCriticPolicy.forward


def _sb3_forward(policy):
    # The bound torch forward declined: the loop calls the policy module itself, SB3's forward
    return None


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_learning_is_unchanged_by_the_bound_forward(env_id, monkeypatch):
    def run() -> list[th.Tensor]:
        model = TRPO("MlpPolicy", env_id, n_steps=128, batch_size=64, n_critic_updates=2, seed=3)
        assert bind_rollout_forward(model.policy) is not None
        model.learn(384)
        return [param.detach().clone() for param in model.policy.parameters()] + [th.as_tensor(model.rollout_buffer.actions)]

    # The torch-bound forward against SB3's forward: the NumPy loop off in both runs
    monkeypatch.setattr(sb3_trpo.common.on_policy_ng, "bind_numpy_forward", lambda policy: None)
    fast = run()
    monkeypatch.setattr(sb3_trpo.common.on_policy_ng, "bind_rollout_forward", _sb3_forward)
    reference = run()
    for a, b in zip(fast, reference, strict=True):
        assert th.equal(a, b)


BUFFER_ARRAYS = ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns")


def _collect(env_id: str, sb3: bool, n_steps: int, **kwargs) -> tuple[TRPO, object]:
    # One rollout from the same seed, through SB3's collect_rollouts or ours
    model = TRPO("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0), n_steps=n_steps, batch_size=n_steps, seed=0, **kwargs)
    model._setup_learn(n_steps * 2, None)
    callback = model._init_callback(None)
    collect = OnPolicyAlgorithm.collect_rollouts if sb3 else TRPO.collect_rollouts
    assert collect(model, model.env, callback, model.rollout_buffer, n_steps)
    return model, model.rollout_buffer


@pytest.mark.parametrize(
    "env_id,kwargs",
    [
        ("Pendulum-v1", {}),  # Box actions; 256 steps > the 200-step time limit: truncated episodes bootstrapped
        ("CartPole-v1", {}),  # Discrete actions, terminated episodes
        ("MountainCarContinuous-v0", dict(policy_kwargs=dict(net_arch=[16], activation_fn=nn.ReLU))),
        ("Pendulum-v1", dict(use_sde=True, sde_sample_freq=4)),  # gSDE: SB3's loop with the bound forward
    ],
)
def test_collected_buffer_equals_sb3s(env_id, kwargs):
    reference_model, reference = _collect(env_id, True, 256, **kwargs)
    model, ours = _collect(env_id, False, 256, **kwargs)
    assert (bind_numpy_forward(model.policy) is not None) == (not kwargs.get("use_sde", False))
    if env_id == "Pendulum-v1":
        assert ours.episode_starts[1:].sum() == 2  # each env's episode truncated once, and bootstrapped
    for name in BUFFER_ARRAYS:
        expected, actual = getattr(reference, name), getattr(ours, name)
        assert actual.shape == expected.shape and actual.dtype == expected.dtype, name
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_array_equal(ours.episode_starts, reference.episode_starts)
    assert model.num_timesteps == reference_model.num_timesteps == 512
    np.testing.assert_allclose(model._last_obs, reference_model._last_obs, rtol=1e-4, atol=1e-4)
    if kwargs.get("use_sde"):
        for name in BUFFER_ARRAYS:  # the same code path: bit for bit
            np.testing.assert_array_equal(getattr(ours, name), getattr(reference, name))


def _one_rollout(model: OnPolicyAlgorithm, collect, n_steps: int, **kwargs) -> None:
    # One rollout of n_steps per env through `collect` (ours, or an upstream loop called on our model), the global
    # generators (torch's draws; numpy's in the masked envs) seeded by the steps so far
    set_random_seed(model.num_timesteps)
    if model._last_obs is None:
        model._setup_learn(n_steps * model.n_envs, None)
    callback = model._init_callback(None)
    assert collect(model, model.env, callback, model.rollout_buffer, n_steps, **kwargs)


def _assert_same_buffers(ours, reference, names) -> None:
    for name in names:
        expected, actual = getattr(reference, name), getattr(ours, name)
        assert actual.shape == expected.shape and actual.dtype == expected.dtype, name
        np.testing.assert_array_equal(actual, expected, err_msg=name)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("bound_forward", [True, False])
def test_the_loop_pins_sb3s_buffer_bit_for_bit(env_id, bound_forward, monkeypatch):
    # Our loop with the torch forward (bound, or the policy module's) against SB3's own (PPO's: OnPolicyAlgorithm's
    # collect_rollouts), from the same seed and weights, two rollouts each: the same buffers, bit for bit, so that an
    # upstream change of SB3's loop shows up here (Pendulum: truncated episodes bootstrapped)
    monkeypatch.setattr(sb3_trpo.common.on_policy_ng, "bind_numpy_forward", lambda policy: None)
    if not bound_forward:
        monkeypatch.setattr(sb3_trpo.common.on_policy_ng, "bind_rollout_forward", _sb3_forward)
    models = [TRPO("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0), n_steps=256, batch_size=256, seed=0) for _ in "ab"]
    assert bind_rollout_forward(models[1].policy) is not None  # (declined inside the loop when not bound_forward)
    for _ in range(2):
        _one_rollout(models[0], PPO.collect_rollouts, 256)
        _one_rollout(models[1], TRPO.collect_rollouts, 256)
        _assert_same_buffers(models[1].rollout_buffer, models[0].rollout_buffer, BUFFER_ARRAYS)
    np.testing.assert_array_equal(models[1]._last_obs, models[0]._last_obs)
    assert models[0].num_timesteps == models[1].num_timesteps == 1024


RECURRENT_ARRAYS = (*BUFFER_ARRAYS, "hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("policy_kwargs", [{}, dict(shared_lstm=True, enable_critic_lstm=False)])
def test_the_loop_pins_recurrent_ppos_buffer_bit_for_bit(env_id, policy_kwargs):
    # RecurrentTRPO's hooks in our loop against sb3-contrib's RecurrentPPO.collect_rollouts, two rollouts each (the
    # LSTM states carried from one to the next): the same buffers and states, bit for bit
    def make() -> RecurrentTRPO:
        env = make_vec_env(env_id, n_envs=2, seed=0)
        kwargs = dict(lstm_hidden_size=8, net_arch=[16], **policy_kwargs)
        return RecurrentTRPO("MlpLstmPolicy", env, n_steps=256, batch_size=128, policy_kwargs=kwargs, seed=0)

    reference, ours = make(), make()
    for _ in range(2):
        _one_rollout(reference, RecurrentPPO.collect_rollouts, 256)
        _one_rollout(ours, RecurrentTRPO.collect_rollouts, 256)
        _assert_same_buffers(ours.rollout_buffer, reference.rollout_buffer, RECURRENT_ARRAYS)
    for actual, expected in zip(ours._last_lstm_states, reference._last_lstm_states, strict=True):
        for got, want in zip(actual, expected, strict=True):
            assert th.equal(got, want)


@pytest.mark.parametrize("use_masking", [True, False])
def test_the_loop_pins_maskable_ppos_buffer_bit_for_bit(use_masking):
    # MaskableTRPO's masks in our loop against sb3-contrib's MaskablePPO.collect_rollouts: the same buffers, masks
    # included, bit for bit
    def make() -> MaskableTRPO:
        env_kwargs = dict(dim=8, n_invalid_actions=4, ep_length=30)
        env = make_vec_env(InvalidActionEnvDiscrete, n_envs=2, seed=0, env_kwargs=env_kwargs)
        return MaskableTRPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=0)

    reference, ours = make(), make()
    ours._use_masking = use_masking
    for _ in range(2):
        _one_rollout(reference, MaskablePPO.collect_rollouts, 64, use_masking=use_masking)
        _one_rollout(ours, MaskableTRPO.collect_rollouts, 64)
        _assert_same_buffers(ours.rollout_buffer, reference.rollout_buffer, (*BUFFER_ARRAYS, "action_masks"))
    assert ours.rollout_buffer.action_masks.all() != use_masking


class ContractCallback(BaseCallback):
    """Counts SB3's callback events and reads the locals SB3 gives on_step, with SB3's types."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.steps = self.rollout_starts = self.rollout_ends = 0

    def _on_rollout_start(self) -> None:
        self.rollout_starts += 1

    def _on_step(self) -> bool:
        self.steps += 1
        assert isinstance(self.locals["values"], th.Tensor) and isinstance(self.locals["log_probs"], th.Tensor)
        assert isinstance(self.locals["actions"], np.ndarray) and len(self.locals["infos"]) == self.training_env.num_envs
        assert self.locals["new_obs"].shape[0] == len(self.locals["rewards"]) == len(self.locals["dones"])
        return self.stop_after is None or self.steps < self.stop_after

    def _on_rollout_end(self) -> None:
        self.rollout_ends += 1


def test_numpy_collection_keeps_sb3s_callback_contract():
    model = TRPO("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=32, batch_size=64, seed=0)
    assert bind_numpy_forward(model.policy) is not None
    callback = ContractCallback()
    model.learn(32 * 2 * 3, callback=callback, progress_bar=True)
    assert (callback.steps, callback.rollout_starts, callback.rollout_ends) == (96, 3, 3)
    # A callback that returns False stops learn() at that step, before the step is stored
    stopping = ContractCallback(stop_after=10)
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=32, seed=0)
    model.learn(320, callback=stopping)
    assert stopping.steps == 10 and model.num_timesteps == 10 and model._n_updates == 0


def test_numpy_collection_with_vec_normalize_and_subprocesses():
    # Workers forked: SB3's default, forkserver, starts each in a new interpreter (seconds more for the same collection)
    fork = dict(start_method="fork")
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv, vec_env_kwargs=fork))
    try:
        model = TRPO("MlpPolicy", env, n_steps=64, batch_size=64, policy_kwargs=dict(net_arch=[8]), seed=0)
        model.learn(256)
        assert model.num_timesteps == 256 and model._n_updates == 2
        assert np.abs(model.rollout_buffer.observations).max() <= env.clip_obs
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_learning_with_the_numpy_collection_matches_sb3s_to_float_tolerance(env_id, monkeypatch):
    # Two updates from the same seed: the parameters agree to float rounding (a rounding-level change only)
    def run() -> list[th.Tensor]:
        model = TRPO("MlpPolicy", env_id, n_steps=128, batch_size=64, n_critic_updates=2, seed=3)
        model.learn(256)
        return [param.detach().clone() for param in model.policy.parameters()]

    fast = run()
    monkeypatch.setattr(sb3_trpo.common.on_policy_ng, "bind_numpy_forward", lambda policy: None)
    monkeypatch.setattr(sb3_trpo.common.on_policy_ng, "bind_rollout_forward", _sb3_forward)
    reference = run()
    for a, b in zip(fast, reference, strict=True):
        assert th.allclose(a, b, rtol=1e-3, atol=1e-4)


def test_numpy_forward_applies_where_it_should():
    assert bind_numpy_forward(TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64).policy) is not None
    assert bind_numpy_forward(TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, use_sde=True).policy) is None
    from stable_baselines3.common.envs import SimpleMultiObsEnv

    # SimpleMultiObsEnv has an image key: its CombinedExtractor has a CNN, so the bound torch forward (or SB3's) runs
    dict_model = TRPO("MultiInputPolicy", SimpleMultiObsEnv(random_start=False), n_steps=64, batch_size=64)
    assert bind_numpy_forward(dict_model.policy) is None


# ---------------------------------------------------------------------------------------------------------------------
# predict: SB3's own, with the actor's forward bound
# ---------------------------------------------------------------------------------------------------------------------


def _sb3_predict(model, obs, deterministic):
    # SB3's predict as BaseAlgorithm defines it: policy.predict, without the bound actions
    return BaseAlgorithm.predict(model, obs, deterministic=deterministic)


def _perturbed(model):
    with th.no_grad():
        for param in model.policy.parameters():
            param.add_(0.3 * th.randn_like(param))
    return model


def _vector_dict_env():
    class VectorDict(gym.Env):
        observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (3,)), "b": spaces.Box(-2, 2, (2, 2))})
        action_space = spaces.Box(-1, 1, (2,))

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    return VectorDict()


@pytest.mark.parametrize(
    "policy,env_id,policy_kwargs",
    [
        ("MlpPolicy", "Pendulum-v1", {}),
        ("MlpPolicy", "CartPole-v1", dict(net_arch=dict(pi=[8, 8], vf=[4]), activation_fn=nn.ReLU)),
        ("MlpPolicy", "MountainCarContinuous-v0", dict(net_arch=[], log_std_init=0.5)),
        ("MultiInputPolicy", "vector-dict", {}),
    ],
)
@pytest.mark.parametrize("deterministic", [True, False])
def test_predict_equals_sb3s(policy, env_id, policy_kwargs, deterministic):
    env = _vector_dict_env() if env_id == "vector-dict" else env_id
    model = _perturbed(TRPO(policy, env, n_steps=64, batch_size=64, policy_kwargs=policy_kwargs, seed=0))
    assert model._predict_actions.of(model.policy) is not None
    space = model.observation_space
    single = space.sample()
    batch = (
        {k: np.stack([space.sample()[k] for _ in range(5)]) for k in space.spaces}
        if isinstance(space, spaces.Dict)
        else np.stack([space.sample() for _ in range(5)])
    )
    for obs in (single, batch):
        th.manual_seed(7)
        want, want_state = _sb3_predict(model, obs, deterministic)
        th.manual_seed(7)
        got, state = model.predict(obs, deterministic=deterministic)
        assert state is None and want_state is None
        assert got.shape == want.shape and got.dtype == want.dtype
        assert np.array_equal(got, want)
    # SB3's predict leaves the policy in evaluation mode; nothing of the bound path is left on it
    model.policy.set_training_mode(True)
    model.predict(single)
    assert not any(module.training for module in model.policy.modules())
    assert "_predict" not in vars(model.policy) and "set_training_mode" not in vars(model.policy)


def test_predict_follows_the_weights_and_modules_it_reads():
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, n_critic_updates=1, seed=0)
    obs = np.stack([model.observation_space.sample() for _ in range(4)])
    model.predict(obs, deterministic=True)  # binds
    model.learn(128)  # the line search writes the actor's parameters
    assert np.array_equal(model.predict(obs, deterministic=True)[0], _sb3_predict(model, obs, True)[0])
    # A replaced layer or parameter data, a replaced log std: rebuilt or read afresh, never stale
    model.policy.action_net = nn.Linear(64, 1)
    assert np.array_equal(model.predict(obs, deterministic=True)[0], _sb3_predict(model, obs, True)[0])
    with th.no_grad():
        model.policy.mlp_extractor.policy_net[0].weight.data = th.randn(64, 3)
    assert np.array_equal(model.predict(obs, deterministic=True)[0], _sb3_predict(model, obs, True)[0])
    model.policy.log_std = nn.Parameter(th.full((1,), 1.5))
    th.manual_seed(1)
    want = _sb3_predict(model, obs, False)[0]
    th.manual_seed(1)
    assert np.array_equal(model.predict(obs)[0], want)
    # A loaded model: another policy, bound afresh
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = TRPO.load(buffer)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("kwargs", [dict(use_sde=True), dict(policy_kwargs=dict(activation_fn=nn.ELU))])
def test_predict_keeps_sb3s_path_where_the_bound_actions_do_not_apply(kwargs):
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, seed=0, **kwargs)
    assert model._predict_actions.of(model.policy) is None
    obs = model.observation_space.sample()
    assert np.array_equal(model.predict(obs, deterministic=True)[0], _sb3_predict(model, obs, True)[0])
    assert "_predict" not in vars(model.policy)


def test_bound_predict_leaves_the_policy_as_it_was_even_after_an_error():
    policy = ActorCriticPolicy(BOX_OBS, spaces.Discrete(2), lambda _: 1e-3)

    def actions(obs, deterministic=False):
        assert "_predict" not in vars(policy)
        raise RuntimeError("inside")

    assert bind_policy_actions(policy) is not None
    with pytest.raises(RuntimeError, match="inside"):
        predict_with(policy, actions, BOX_OBS.sample(), deterministic=True)
    assert "_predict" not in vars(policy) and "set_training_mode" not in vars(policy)
    assert policy._predict.__func__ is ActorCriticPolicy._predict


def test_predict_from_several_threads_at_once():
    # SB3's predict may be called from several threads (a server, say): the bound methods stay installed while any
    # call is inside, every call gets SB3's actions, and nothing is left on the policy afterwards
    model = _perturbed(TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, seed=0))
    observations = np.stack([model.observation_space.sample() for _ in range(16)])
    expected = [_sb3_predict(model, obs, True)[0] for obs in observations]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(50):
                for obs, want in zip(observations, expected, strict=True):
                    assert np.array_equal(model.predict(obs, deterministic=True)[0], want)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch inside predict calls, not only between them
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)
    assert not errors, errors[:1]
    assert "_predict" not in vars(model.policy) and "set_training_mode" not in vars(model.policy)
