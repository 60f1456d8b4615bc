"""Save/load round trip (SB3 style): every parameter, the critic optimizer's state, predictions, and training goes on."""

from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, SimpleMultiObsEnv

from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import set_random_seed

from sb3_trpo import TRPO


def optimizer_state_equal(a: th.optim.Optimizer, b: th.optim.Optimizer) -> bool:
    state_a, state_b = a.state_dict(), b.state_dict()
    if state_a["param_groups"] != state_b["param_groups"] or state_a["state"].keys() != state_b["state"].keys():
        return False
    for key, values in state_a["state"].items():
        for name, value in values.items():
            other = state_b["state"][key][name]
            if isinstance(value, th.Tensor):
                if not th.equal(value, other):
                    return False
            elif value != other:
                return False
    return True


@pytest.mark.parametrize(
    "policy,env_fn,kwargs",
    [
        ("MlpPolicy", lambda: IdentityEnv(3), {}),
        ("MlpPolicy", lambda: IdentityEnvBox(-1, 1), dict(use_sde=True)),
        ("MultiInputPolicy", lambda: SimpleMultiObsEnv(random_start=False), {}),
    ],
)
def test_save_load_round_trip(tmp_path, policy, env_fn, kwargs):
    env = env_fn()
    model = TRPO(policy, env, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[16]), seed=0, **kwargs)
    model.learn(128)
    observations = (
        np.stack([env.observation_space.sample() for _ in range(10)])
        if policy == "MlpPolicy"
        else {key: np.stack([space.sample() for _ in range(10)]) for key, space in env.observation_space.spaces.items()}
    )
    actions, _ = model.predict(observations, deterministic=True)
    state_dict = {key: value.clone() for key, value in model.policy.state_dict().items()}

    model.save(tmp_path / "trpo")
    loaded = TRPO.load(tmp_path / "trpo", env=env)

    # Every parameter and buffer, bit for bit
    loaded_state = loaded.policy.state_dict()
    assert state_dict.keys() == loaded_state.keys()
    for key, value in state_dict.items():
        assert th.equal(value, loaded_state[key]), key
    # The critic optimizer: same parameters, same Adam moments and step counts
    assert optimizer_state_equal(model.policy.optimizer, loaded.policy.optimizer)
    assert len(loaded.policy.optimizer.param_groups[0]["params"]) == len(loaded.critic_params)
    # Hyperparameters and counters
    for name in [
        "target_kl",
        "cg_max_steps",
        "cg_damping",
        "line_search_shrinking_factor",
        "line_search_max_iter",
        "n_critic_updates",
        "sub_sampling_factor",
        "batch_size",
        "num_timesteps",
        "_n_updates",
    ]:
        assert getattr(loaded, name) == getattr(model, name), name
    # Same predictions
    loaded_actions, _ = loaded.predict(observations, deterministic=True)
    assert np.array_equal(actions, loaded_actions)
    # Training continues, and the loaded model's actor/critic split points at its own parameters
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == 192
    loaded_ids = {id(param) for param in loaded.policy.parameters()}
    assert {id(param) for param in loaded.actor_params + loaded.critic_params} == loaded_ids


def test_load_then_continue_equals_uninterrupted(tmp_path):
    """Saving and loading mid-training does not change what training computes afterwards (same seed, same data)."""

    def make() -> TRPO:
        return TRPO("MlpPolicy", IdentityEnv(3), n_steps=32, batch_size=16, policy_kwargs=dict(net_arch=[8]), seed=5)

    model = make()
    model.learn(64)
    model.save(tmp_path / "mid")
    loaded = TRPO.load(tmp_path / "mid", env=IdentityEnv(3))
    # Same critic optimizer state drives the same next critic update on the same batch
    loaded.rollout_buffer = model.rollout_buffer
    loaded.set_logger(configure(None, []))
    # train() draws from numpy (the buffer's shuffle) and torch (critic minibatches): same seeds for both
    set_random_seed(0)
    model.train()
    set_random_seed(0)
    loaded.train()
    for a, b in zip(model.policy.parameters(), loaded.policy.parameters(), strict=True):
        assert th.equal(a, b)


@pytest.mark.parametrize("name", ["pendulum", "cartpole"])
def test_legacy_model_loads_and_predicts_the_same(name: str) -> None:
    # Saved by the flat-package layout (tests/fixtures/make_legacy_models.py): loads with today's code, is a TRPO
    # with its options at their defaults, predicts the actions it predicted then, and trains on
    fixtures = Path(__file__).parent / "fixtures"
    expected = np.load(fixtures / f"legacy_trpo_{name}.npz")
    model = TRPO.load(fixtures / f"legacy_trpo_{name}.zip")
    assert type(model) is TRPO and model.n_steps == 64
    assert model.ent_coef == 0.0 and not model.adaptive_kl and not model.cg_warm_start
    actions, _ = model.predict(expected["observations"], deterministic=True)
    # The same actions up to float32 rounding: the fixtures were made on another machine, and torch's CPU kernels
    # round differently from one CPU to another (1 ulp on an Intel Xeon against the AMD EPYC that saved them)
    np.testing.assert_allclose(actions, expected["actions"], rtol=1e-5, atol=1e-6)
    env_id = {"pendulum": "Pendulum-v1", "cartpole": "CartPole-v1"}[name]
    model.set_env(make_vec_env(env_id, n_envs=1, seed=0))
    model.learn(64)
    assert model._n_updates == 3
