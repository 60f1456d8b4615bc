"""The actor/critic split of sb3_trpo.common.policies: disjoint, complete, by structure, loud on unknown policies."""

from collections import OrderedDict

import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from torch import nn

from sb3_trpo import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_trpo.common.policies import PolicyPartitionError, actor_critic_parameters

BOX_OBS = spaces.Box(-1, 1, (4,))
IMAGE_OBS = spaces.Box(0, 255, (3, 36, 36), dtype="uint8")
DICT_OBS = spaces.Dict({"vec": spaces.Box(-1, 1, (3,)), "img": spaces.Box(0, 255, (1, 36, 36), dtype="uint8")})


def lr_schedule(_: float) -> float:
    return 1e-3


def ids(params: list[nn.Parameter]) -> set[int]:
    return {id(param) for param in params}


def test_aliases_are_sb3_policies():
    assert MlpPolicy is ActorCriticPolicy
    assert CnnPolicy is ActorCriticCnnPolicy
    assert MultiInputPolicy is MultiInputActorCriticPolicy


@pytest.mark.parametrize(
    "policy_class,observation_space",
    [(MlpPolicy, BOX_OBS), (CnnPolicy, IMAGE_OBS), (MultiInputPolicy, DICT_OBS)],
)
@pytest.mark.parametrize("share_features_extractor", [True, False])
@pytest.mark.parametrize(
    "action_space,use_sde", [(spaces.Box(-1, 1, (2,)), False), (spaces.Box(-1, 1, (2,)), True), (spaces.Discrete(3), False)]
)
def test_partition_is_disjoint_complete_and_structural(
    policy_class, observation_space, share_features_extractor, action_space, use_sde
):
    kwargs = {"share_features_extractor": share_features_extractor, "use_sde": use_sde}
    if policy_class is not MlpPolicy:
        kwargs["features_extractor_kwargs"] = {"features_dim": 8} if policy_class is CnnPolicy else {"cnn_output_dim": 8}
    policy = policy_class(observation_space, action_space, lr_schedule, net_arch=[8], **kwargs)
    actor, critic = actor_critic_parameters(policy)

    assert ids(actor).isdisjoint(ids(critic))
    assert ids(actor) | ids(critic) == ids(list(policy.parameters()))
    # Structure, not names
    assert ids(list(policy.action_net.parameters())) <= ids(actor)
    assert ids(list(policy.mlp_extractor.policy_net.parameters())) <= ids(actor)
    assert ids(list(policy.value_net.parameters())) <= ids(critic)
    assert ids(list(policy.mlp_extractor.value_net.parameters())) <= ids(critic)
    if action_space.__class__ is spaces.Box:
        assert id(policy.log_std) in ids(actor)
    extractor = ids(list(policy.features_extractor.parameters()))
    if share_features_extractor:
        # A shared features extractor belongs to the actor
        assert extractor <= ids(actor)
    else:
        assert ids(list(policy.pi_features_extractor.parameters())) <= ids(actor)
        assert ids(list(policy.vf_features_extractor.parameters())) <= ids(critic)

    # Every actor parameter shapes the action distribution; no critic parameter does
    obs = (
        th.as_tensor(observation_space.sample()[None])
        if not isinstance(observation_space, spaces.Dict)
        else {key: th.as_tensor(space.sample()[None]) for key, space in observation_space.spaces.items()}
    )
    distribution = policy.get_distribution(obs)
    torch_dist = distribution.distribution
    output = torch_dist.mean.sum() + torch_dist.stddev.sum() if hasattr(torch_dist, "loc") else torch_dist.logits.sum()
    grads = th.autograd.grad(output, critic, allow_unused=True)
    assert all(grad is None for grad in grads)


def test_parameters_named_value_stay_in_the_actor():
    """A custom actor layer whose name contains 'value' is still part of the trust region (no name filtering)."""
    policy = MlpPolicy(BOX_OBS, spaces.Discrete(2), lr_schedule, net_arch=[8])
    policy.action_net = nn.Sequential(OrderedDict(value_gate=nn.Linear(8, 8), logits=nn.Linear(8, 2)))
    assert any("value" in name for name, _ in policy.action_net.named_parameters(prefix="action_net"))
    actor, critic = actor_critic_parameters(policy)
    assert ids(list(policy.action_net.value_gate.parameters())) <= ids(actor)
    assert ids(list(policy.action_net.parameters())).isdisjoint(ids(critic))


def test_unassigned_parameters_raise():
    policy = MlpPolicy(BOX_OBS, spaces.Discrete(2), lr_schedule, net_arch=[8])
    policy.extra_head = nn.Linear(3, 3)
    with pytest.raises(PolicyPartitionError, match="extra_head"):
        actor_critic_parameters(policy)


def test_missing_structure_raises():
    class NotActorCritic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(2, 2)

    with pytest.raises(PolicyPartitionError, match="actor_parameters"):
        actor_critic_parameters(NotActorCritic())


def test_custom_partition_methods_are_used_and_checked():
    class CustomPolicy(ActorCriticPolicy):
        def actor_parameters(self) -> list[nn.Parameter]:
            return list(self.mlp_extractor.policy_net.parameters()) + list(self.action_net.parameters())

        def critic_parameters(self) -> list[nn.Parameter]:
            return list(self.mlp_extractor.value_net.parameters()) + list(self.value_net.parameters())

    policy = CustomPolicy(BOX_OBS, spaces.Discrete(2), lr_schedule, net_arch=[8])
    actor, critic = actor_critic_parameters(policy)
    assert ids(actor) == ids(list(policy.mlp_extractor.policy_net.parameters()) + list(policy.action_net.parameters()))
    assert ids(critic) == ids(list(policy.mlp_extractor.value_net.parameters()) + list(policy.value_net.parameters()))

    class OverlappingPolicy(CustomPolicy):
        def critic_parameters(self) -> list[nn.Parameter]:
            return super().critic_parameters() + list(self.action_net.parameters())

    with pytest.raises(PolicyPartitionError, match="both"):
        actor_critic_parameters(OverlappingPolicy(BOX_OBS, spaces.Discrete(2), lr_schedule, net_arch=[8]))
