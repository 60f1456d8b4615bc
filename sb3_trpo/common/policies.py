"""
The split of an actor-critic policy's parameters, by its structure, into the actor's (everything that shapes the
action distribution: the trust-region step moves them) and the critic's (the value function: Adam regression).

A shared features extractor (``share_features_extractor=True``, SB3's default) belongs to the actor: if the critic's
Adam steps moved it, they would change the policy after the line search measured the KL, and the update could leave
the trust region. Pass ``share_features_extractor=False`` to give the critic an extractor it trains freely.
"""

from typing import TypeGuard

from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution
from sb3_contrib.common.maskable.policies import (
    MaskableActorCriticCnnPolicy,
    MaskableActorCriticPolicy,
    MaskableMultiInputActorCriticPolicy,
)
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import MlpExtractor
from torch import nn


class PolicyPartitionError(TypeError):
    """The policy's parameters cannot be split into actor and critic."""


def _module_parameters(policy: nn.Module, attribute: str) -> list[nn.Parameter]:
    module: object = policy
    for name in attribute.split("."):
        module = getattr(module, name, None)
    if not isinstance(module, nn.Module):
        raise PolicyPartitionError(
            f"{type(policy).__name__} has no submodule `{attribute}`: TRPO splits the parameters of SB3's "
            "ActorCriticPolicy by structure (features extractors, mlp_extractor.policy_net / value_net, action_net, "
            "log_std, value_net). A custom policy must either keep that structure or define the methods "
            "`actor_parameters()` and `critic_parameters()`."
        )
    return list(module.parameters())


def _standard_partition(policy: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    shared = getattr(policy, "share_features_extractor", True)
    actor = _module_parameters(policy, "pi_features_extractor")
    actor += _module_parameters(policy, "mlp_extractor.policy_net")
    actor += _module_parameters(policy, "action_net")
    log_std = getattr(policy, "log_std", None)
    if isinstance(log_std, nn.Parameter):
        actor.append(log_std)

    critic = [] if shared else _module_parameters(policy, "vf_features_extractor")
    critic += _module_parameters(policy, "mlp_extractor.value_net")
    critic += _module_parameters(policy, "value_net")
    # sb3-contrib's recurrent policies: the actor's LSTM shapes the actions (with shared_lstm the critic reads its
    # output detached); the critic's own LSTM, or its linear layer in place of one, belong to the critic
    for name, owner in (("lstm_actor", actor), ("lstm_critic", critic), ("critic", critic)):
        if isinstance(getattr(policy, name, None), nn.Module):
            owner += _module_parameters(policy, name)
    return actor, critic


def actor_critic_parameters(policy: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """
    Split a policy's parameters into the actor's (theta) and the critic's (phi).

    A policy that defines ``actor_parameters()`` and ``critic_parameters()`` decides itself. Otherwise, by SB3's
    ``ActorCriticPolicy`` structure: the actor is the policy features extractor, ``mlp_extractor.policy_net``,
    ``action_net`` and ``log_std``; the critic its own features extractor (when not shared), ``mlp_extractor.value_net``
    and ``value_net``; sb3-contrib's recurrent policies add their LSTMs.

    :param policy: the policy
    :return: (actor parameters, critic parameters), each in the policy's registration order
    :raises PolicyPartitionError: when the two sets overlap or do not cover every trainable parameter
    """
    if callable(getattr(policy, "actor_parameters", None)) and callable(getattr(policy, "critic_parameters", None)):
        actor = list(policy.actor_parameters())  # type: ignore[operator]
        critic = list(policy.critic_parameters())  # type: ignore[operator]
    else:
        actor, critic = _standard_partition(policy)

    # A module may be reachable twice: deduplicate, in the policy's registration order
    actor_ids = {id(param) for param in actor}
    critic_ids = {id(param) for param in critic}
    overlap = actor_ids & critic_ids
    if overlap:
        names = [name for name, param in policy.named_parameters() if id(param) in overlap]
        raise PolicyPartitionError(f"Parameters assigned to both the actor and the critic: {names}")
    trainable = [(name, param) for name, param in policy.named_parameters() if param.requires_grad]
    missing = [name for name, param in trainable if id(param) not in actor_ids | critic_ids]
    if missing:
        raise PolicyPartitionError(
            f"Parameters of {type(policy).__name__} that belong to neither the actor nor the critic: {missing}. "
            "Define `actor_parameters()` and `critic_parameters()` on the policy to say where they go."
        )
    ordered_actor = [param for _, param in trainable if id(param) in actor_ids]
    ordered_critic = [param for _, param in trainable if id(param) in critic_ids]
    return ordered_actor, ordered_critic


#: SB3's actor-critic policy classes whose ``forward`` and ``get_distribution`` are ``ActorCriticPolicy``'s own
SB3_ACTOR_CRITIC_CLASSES = (ActorCriticPolicy, ActorCriticCnnPolicy, MultiInputActorCriticPolicy)
#: sb3-contrib's maskable actor-critic policy classes: the same networks, taking action masks
MASKABLE_ACTOR_CRITIC_CLASSES = (
    MaskableActorCriticPolicy,
    MaskableActorCriticCnnPolicy,
    MaskableMultiInputActorCriticPolicy,
)


def has_flat_mlp_actor(policy: nn.Module, maskable: bool = False) -> TypeGuard[ActorCriticPolicy]:
    """
    Whether the closed-form paths (:mod:`sb3_trpo.common.rollout`, :func:`sb3_trpo.common.fisher.mlp_fisher_vector_product`)
    may apply: one of SB3's actor-critic policy classes itself (a subclass may override ``forward`` or
    ``get_distribution``) with an actor features extractor without trainable parameters (``FlattenExtractor``,
    ``CombinedExtractor`` over vectors), an ``MlpExtractor``, a linear ``action_net`` and a diagonal Gaussian (no gSDE)
    or categorical distribution. :func:`sb3_trpo.common.mlp.mlp_layers` then checks the layers.

    :param maskable: whether sb3-contrib's maskable policy classes (with a ``MaskableCategorical``) qualify too: the
        Fisher products take masks, the rollout forward does not
    """
    classes = SB3_ACTOR_CRITIC_CLASSES + (MASKABLE_ACTOR_CRITIC_CLASSES if maskable else ())
    if type(policy) not in classes:
        return False
    distributions = (DiagGaussianDistribution, CategoricalDistribution, MaskableCategoricalDistribution)
    return (
        not any(param.requires_grad for param in policy.pi_features_extractor.parameters())  # type: ignore[union-attr]
        and type(policy.mlp_extractor) is MlpExtractor
        and type(policy.action_net) is nn.Linear
        and type(policy.action_dist) in distributions
    )


__all__ = [
    "PolicyPartitionError",
    "actor_critic_parameters",
    "has_flat_mlp_actor",
]
