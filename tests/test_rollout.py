"""The bound rollout forward (sb3_trpo.common.rollout) equals SB3's policy.forward bit for bit, and learning is unchanged."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

import sb3_trpo.common.on_policy_ng
from sb3_trpo import TRPO
from sb3_trpo.common.rollout import bind_rollout_forward, rollout_forward

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


def test_rollout_forward_is_removed_on_exit_even_after_an_error():
    policy = ActorCriticPolicy(BOX_OBS, spaces.Discrete(2), lambda _: 1e-3)
    with pytest.raises(RuntimeError, match="inside"):
        with rollout_forward(policy) as active:
            assert active and "forward" in vars(policy)
            raise RuntimeError("inside")
    assert "forward" not in vars(policy)
    assert policy.forward.__func__ is ActorCriticPolicy.forward


@contextmanager
def _sb3_forward(policy):
    yield False


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_learning_is_unchanged_by_the_bound_forward(env_id, monkeypatch):
    def run() -> list[th.Tensor]:
        model = TRPO("MlpPolicy", env_id, n_steps=128, batch_size=64, n_critic_updates=2, seed=3)
        assert bind_rollout_forward(model.policy) is not None
        model.learn(384)
        return [param.detach().clone() for param in model.policy.parameters()] + [th.as_tensor(model.rollout_buffer.actions)]

    fast = run()
    monkeypatch.setattr(sb3_trpo.common.on_policy_ng, "rollout_forward", _sb3_forward)
    reference = run()
    for a, b in zip(fast, reference, strict=True):
        assert th.equal(a, b)
