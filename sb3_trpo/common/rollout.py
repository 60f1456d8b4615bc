"""
A leaner ``policy.forward`` for collecting rollouts, with the same outputs as SB3's, bit for bit.

While collecting a rollout, SB3 calls ``policy(obs)`` once per environment step on a batch of ``n_envs`` observations.
For the small MLP policies TRPO is used with, most of that call's time goes to Python-side work rather than arithmetic:
module calls, distribution objects and their argument checks. :func:`bind_rollout_forward` returns, for the policies
where it applies, a function that computes the same actions, values and log-probabilities with plain tensor operations
in the same order as SB3 and PyTorch do (same kernels, same random draws), with the weights looked up once per rollout.
``tests/test_rollout.py`` checks the outputs are identical to ``policy.forward``'s, and that learning is unchanged.

It applies to SB3's actor-critic policy classes themselves (not user subclasses, which may override ``forward``) whose
actor is a flat MLP over parameter-free features (:func:`sb3_trpo.common.policies.has_flat_mlp_actor`: a
``FlattenExtractor`` on ``Box`` observations, or a ``CombinedExtractor`` over the vector observations of a ``Dict``),
with an ``MlpExtractor`` of linear layers with tanh or ReLU, a linear value head, and a diagonal Gaussian (without
gSDE) or categorical action distribution. Anything else keeps SB3's ``forward``.
"""

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import BaseModel
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sb3_trpo.common.critic import ACTIVATIONS, mlp_layers
from sb3_trpo.common.policies import has_flat_mlp_actor

RolloutForward = Callable[..., tuple[th.Tensor, th.Tensor, th.Tensor]]
#: (W^T, bias or None, activation or None) for each linear layer of a chain
BoundLayers = list[tuple[th.Tensor, th.Tensor | None, Callable[[th.Tensor], th.Tensor] | None]]


# log(sqrt(2 pi)), the constant of torch.distributions.Normal.log_prob, computed the same way
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def _bind_chain(chain: nn.Module) -> BoundLayers | None:
    # An empty chain (net_arch=[]) is the identity: no layer
    if isinstance(chain, nn.Sequential) and len(chain) == 0:
        return []
    layers = mlp_layers([chain])
    if layers is None:
        return None
    return [
        (
            linear.weight.detach().t(),
            None if linear.bias is None else linear.bias.detach(),
            None if activation is None else ACTIVATIONS[type(activation)][0],
        )
        for linear, activation in layers
    ]


def _apply(layers: BoundLayers, inputs: th.Tensor) -> th.Tensor:
    # nn.Linear computes addmm(bias, x, W^T) for 2-d inputs: the same kernel, the same result
    hidden = inputs
    for weight_t, bias, activation in layers:
        hidden = th.mm(hidden, weight_t) if bias is None else th.addmm(bias, hidden, weight_t)
        if activation is not None:
            hidden = activation(hidden)
    return hidden


def bind_rollout_forward(policy: nn.Module) -> RolloutForward | None:
    """
    ``policy.forward`` for rollouts, with the policy's current weights bound, or None where it does not apply.

    The returned function takes ``(obs, deterministic=False)`` and returns ``(actions, values, log_prob)`` exactly as
    SB3's ``ActorCriticPolicy.forward`` does. It reads the weights through detached views: valid while the weights
    are changed in place and the policy is not moved; bind again for each rollout.

    :param policy: the policy
    :return: the forward function, or None (use ``policy.forward``)
    """
    if not has_flat_mlp_actor(policy) or type(policy.value_net) is not nn.Linear:
        return None
    actor = _bind_chain(policy.mlp_extractor.policy_net)
    critic = _bind_chain(policy.mlp_extractor.value_net)
    head = _bind_chain(policy.action_net)
    value_head = _bind_chain(policy.value_net)
    if actor is None or critic is None or head is None or value_head is None:
        return None
    actor, critic = actor + head, critic + value_head
    action_shape: tuple[int, ...] = policy.action_space.shape or ()
    gaussian = type(policy.action_dist) is DiagGaussianDistribution
    log_std = policy.log_std.detach() if gaussian else None
    pi_features = _bind_features(policy, policy.pi_features_extractor)
    vf_extractor = policy.vf_features_extractor
    vf_features = None if vf_extractor is policy.pi_features_extractor else _bind_features(policy, vf_extractor)

    def forward(obs: PyTorchObs, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        features = pi_features(obs)
        values = _apply(critic, features if vf_features is None else vf_features(obs))
        mean_actions = _apply(actor, features)
        if log_std is not None:
            # DiagGaussianDistribution: Normal(mean, ones_like(mean) * exp(log_std)); Normal.sample, Normal.log_prob
            action_std = th.ones_like(mean_actions) * log_std.exp()
            actions = mean_actions if deterministic else th.normal(mean_actions, action_std)
            log_prob = -((actions - mean_actions) ** 2) / (2 * action_std**2) - action_std.log() - _LOG_SQRT_2PI
            log_prob = log_prob.sum(dim=1)
        else:
            # CategoricalDistribution: torch's Categorical over the logits (its argument checks skipped)
            distribution = th.distributions.Categorical(logits=mean_actions, validate_args=False)
            actions = th.argmax(distribution.probs, dim=1) if deterministic else distribution.sample()
            log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *action_shape)), values, log_prob

    return forward


def _bind_features(policy: nn.Module, extractor: nn.Module) -> Callable[[PyTorchObs], th.Tensor]:
    # SB3's `extract_features` (preprocess_obs, then the extractor); for a FlattenExtractor on a non-image Box, its
    # two operations directly: preprocess_obs (Box: float) then nn.Flatten (start_dim=1)
    space = policy.observation_space
    if type(extractor) is FlattenExtractor and isinstance(space, spaces.Box) and not is_image_space(space):
        return lambda obs: obs.float().flatten(1)  # type: ignore[union-attr]
    return lambda obs: BaseModel.extract_features(policy, obs, extractor)  # type: ignore[arg-type]


@contextmanager
def rollout_forward(policy: nn.Module) -> Iterator[bool]:
    """
    Within the block, ``policy(obs)`` runs the bound forward of :func:`bind_rollout_forward` (when it applies).

    The bound function shadows the class's ``forward`` as an instance attribute and is removed on exit, whatever
    happens inside, so the policy is left exactly as it was.

    :param policy: the policy
    :return: (as the context value) whether the fast forward is in use
    """
    forward = bind_rollout_forward(policy)
    if forward is None or "forward" in vars(policy):
        yield False
        return
    policy.forward = forward
    try:
        yield True
    finally:
        del policy.forward
