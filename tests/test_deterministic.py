"""Same seed, same parameters: the whole update is deterministic on CPU."""

import pytest
import torch as th

from sb3_trpo import TRPO


@pytest.mark.parametrize("env_id,kwargs", [("CartPole-v1", {}), ("Pendulum-v1", dict(use_sde=True, sub_sampling_factor=2))])
def test_same_seed_gives_identical_parameters(env_id, kwargs):
    def run(seed: int) -> list[th.Tensor]:
        model = TRPO("MlpPolicy", env_id, n_steps=128, batch_size=32, policy_kwargs=dict(net_arch=[16]), seed=seed, **kwargs)
        model.learn(256)  # two updates
        return [param.detach().clone() for param in model.policy.parameters()]

    first, second, other = run(7), run(7), run(8)
    assert all(th.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(th.equal(a, b) for a, b in zip(first, other, strict=True))
