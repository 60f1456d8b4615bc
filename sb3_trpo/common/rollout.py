"""
The family's rollout loop (:func:`collect_rollouts`: SB3's ``collect_rollouts`` with the policy's calls and the
buffer's rows as hooks, :class:`RolloutStep`), and leaner ``policy.forward`` and ``policy.predict`` for it, with the
same outputs as SB3's, bit for bit (``tests/test_rollout.py``).

For the small MLP policies TRPO runs with, most of SB3's per-step ``policy(obs)`` goes to Python-side work (module
calls, distribution objects, argument checks), not arithmetic. For the policies of
:func:`sb3_trpo.common.policies.has_flat_mlp_actor` whose actor and critic are tanh or ReLU MLPs, the functions here
compute the same operations in the same order with the weights looked up once. Nothing is assigned onto the policy.
"""

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel, BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from sb3_trpo.common.mlp import Layers, affine_layers, mlp_forward, mlp_layers, numpy_forward, numpy_layers
from sb3_trpo.common.policies import has_flat_mlp_actor

RolloutForward = Callable[..., tuple[th.Tensor, th.Tensor, th.Tensor]]
Bound = TypeVar("Bound")


# log(sqrt(2 pi)), the constant of torch.distributions.Normal.log_prob, computed the same way
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def _bind_mlps(policy: ActorCriticPolicy, bind: Callable[[Layers], Bound]) -> tuple[Bound, Bound] | None:
    # The actor's and the critic's layers (each its latent net, then its head) bound by `bind`, or None where either is
    # not a plain MLP
    actor = mlp_layers([policy.mlp_extractor.policy_net, policy.action_net])
    critic = mlp_layers([policy.mlp_extractor.value_net, policy.value_net])
    return None if actor is None or critic is None else (bind(actor), bind(critic))


def bind_rollout_forward(policy: nn.Module) -> RolloutForward | None:
    """
    ``policy.forward`` for one rollout with the policy's current weights bound (detached views), or None where it does
    not apply: ``(obs, deterministic=False) -> (actions, values, log_prob)``, exactly as SB3's
    ``ActorCriticPolicy.forward``.
    """
    if not has_flat_mlp_actor(policy) or (mlps := _bind_mlps(policy, affine_layers)) is None:
        return None
    actor, critic = mlps
    action_shape: tuple[int, ...] = policy.action_space.shape or ()
    gaussian = type(policy.action_dist) is DiagGaussianDistribution
    log_std = policy.log_std.detach() if gaussian else None
    pi_features = _bind_features(policy, policy.pi_features_extractor)
    vf_extractor = policy.vf_features_extractor
    vf_features = None if vf_extractor is policy.pi_features_extractor else _bind_features(policy, vf_extractor)

    def forward(obs: PyTorchObs, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        features = pi_features(obs)
        values = mlp_forward(critic, features if vf_features is None else vf_features(obs))
        mean_actions = mlp_forward(actor, features)
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


def bind_policy_actions(policy: nn.Module) -> Callable[..., th.Tensor] | None:
    """
    ``policy._predict`` of a flat MLP actor, or None where it does not apply: ``(obs, deterministic=False) -> actions``,
    those of ``policy.get_distribution(obs).get_actions(deterministic)`` bit for bit. It reads the weights at each call.
    """
    if not has_flat_mlp_actor(policy):
        return None
    layers = mlp_layers([policy.mlp_extractor.policy_net, policy.action_net])
    if layers is None:
        return None
    pi_features = _bind_features(policy, policy.pi_features_extractor)
    log_std = policy.log_std if type(policy.action_dist) is DiagGaussianDistribution else None

    def actions(obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        hidden = mlp_forward(affine_layers(layers, detach=False), pi_features(obs))
        if log_std is not None:
            # DiagGaussianDistribution: the mean, or Normal(mean, ones_like(mean) * exp(log_std)).rsample()
            return hidden if deterministic else th.normal(hidden, th.ones_like(hidden) * log_std.exp())
        distribution = th.distributions.Categorical(logits=hidden, validate_args=False)
        return th.argmax(distribution.probs, dim=1) if deterministic else distribution.sample()

    return actions


def _actor_modules(policy: nn.Module) -> tuple[Any, ...]:
    # What bind_policy_actions' function holds besides the weights it reads: the policy's actor modules and objects
    extractor = getattr(policy, "mlp_extractor", None)
    policy_net = getattr(extractor, "policy_net", None)
    chain = tuple(policy_net) if isinstance(policy_net, nn.Sequential) else ()
    return (
        policy,
        getattr(policy, "pi_features_extractor", None),
        extractor,
        policy_net,
        *chain,
        getattr(policy, "action_net", None),
        getattr(policy, "action_dist", None),
        getattr(policy, "log_std", None),
    )


class PredictActions:
    """
    :func:`bind_policy_actions` for whichever policy ``predict`` is called on, rebuilt only when the actor's modules
    change (another policy after ``load``, a replaced layer).
    """

    def __init__(self) -> None:
        self._modules: tuple[Any, ...] = ()
        self._actions: Callable[..., th.Tensor] | None = None

    def of(self, policy: nn.Module) -> Callable[..., th.Tensor] | None:
        """:return: the bound actions of ``policy``, or None where they do not apply"""
        modules = _actor_modules(policy)
        if len(modules) != len(self._modules) or any(new is not old for new, old in zip(modules, self._modules, strict=True)):
            self._modules, self._actions = modules, bind_policy_actions(policy)
        return self._actions


def predict_with(
    policy: BasePolicy, actions: Callable[..., th.Tensor], observation: np.ndarray | dict[str, np.ndarray], deterministic: bool
) -> np.ndarray:
    """
    SB3's ``BasePolicy.predict`` step for step, with the bound ``actions`` instead of ``policy._predict``: the
    observation's check, ``obs_to_tensor``, the actions' shape, clipping (or unscaling), a single observation's squeeze.
    ``set_training_mode(False)`` walks the modules only when the policy is in training mode.
    """
    if policy.training:
        policy.set_training_mode(False)
    if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], dict):
        raise ValueError(
            "You have passed a tuple to the predict() function instead of a Numpy array or a Dict. "
            "You are probably mixing Gym API with SB3 VecEnv API: `obs, info = env.reset()` (Gym) "
            "vs `obs = vec_env.reset()` (SB3 VecEnv)."
        )
    obs_tensor, vectorized_env = policy.obs_to_tensor(observation)
    with th.no_grad():
        action_tensor = actions(obs_tensor, deterministic=deterministic)
    result: np.ndarray = action_tensor.cpu().numpy().reshape((-1, *(policy.action_space.shape or ())))
    if isinstance(policy.action_space, spaces.Box):
        if policy.squash_output:
            result = policy.unscale_action(result)
        else:
            result = np.clip(result, policy.action_space.low, policy.action_space.high)
    return result if vectorized_env else result.squeeze(axis=0)


# ---------------------------------------------------------------------------------------------------------------------
# A NumPy forward and a lean collection loop, for the common case: flat Box observations, an MLP, a CPU policy
# ---------------------------------------------------------------------------------------------------------------------

#: ``obs -> (actions, values, log_prob)`` as NumPy arrays: actions (n_envs, *action_shape), values (n_envs, 1),
#: log_prob (n_envs,)
NumpyForward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
#: ``obs -> values`` of shape (batch, 1), as ``policy.predict_values``
NumpyValues = Callable[[np.ndarray], np.ndarray]


def _flat_float32(obs: np.ndarray) -> np.ndarray:
    # preprocess_obs (Box: float) then a flatten from the second dimension on (nn.Flatten)
    return np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)


def _numpy_features(policy: nn.Module) -> Callable[[Any], np.ndarray] | None:
    """
    The features of parameter-free extractors over vector observations, in NumPy (a ``FlattenExtractor`` on a
    non-image ``Box``, or a ``CombinedExtractor`` of non-image ``Box`` keys), or None where it does not apply.
    """
    space = policy.observation_space
    extractor = policy.pi_features_extractor
    if type(policy.vf_features_extractor) is not type(extractor):
        return None
    if type(extractor) is FlattenExtractor and isinstance(space, spaces.Box) and not is_image_space(space):
        return _flat_float32
    if type(extractor) is not CombinedExtractor or not isinstance(space, spaces.Dict):
        return None
    keys = list(extractor.extractors.keys())
    boxes = [space.spaces[key] for key in keys]
    if any(not isinstance(box, spaces.Box) or is_image_space(box) for box in boxes):
        return None
    if any(type(module) is not nn.Flatten for module in extractor.extractors.values()):
        return None
    return lambda obs: np.concatenate([_flat_float32(obs[key]) for key in keys], axis=1)


def bind_numpy_forward(policy: nn.Module) -> tuple[NumpyForward, NumpyValues] | None:
    """
    The rollout forward of :func:`bind_rollout_forward` in NumPy, for small MLPs on the CPU, or None where it does not
    apply: ``obs -> (actions, values, log_prob)`` and ``obs -> values``.

    For the RL Zoo's MuJoCo settings each torch operation costs microseconds of dispatch for nanoseconds of arithmetic;
    NumPy's are several times cheaper. The random draws stay torch's (the same generator and calls as SB3), so the
    outputs equal ``policy.forward``'s to float32 rounding (the matrix products sum in NumPy's BLAS's order).
    """
    if not has_flat_mlp_actor(policy) or policy.device.type != "cpu" or (features_of := _numpy_features(policy)) is None:
        return None
    # Copies of the weights, valid for one rollout (the weights do not change during it)
    if (mlps := _bind_mlps(policy, numpy_layers)) is None:
        return None
    actor, critic = mlps
    action_shape: tuple[int, ...] = policy.action_space.shape or ()

    if type(policy.action_dist) is DiagGaussianDistribution:
        with th.no_grad():
            scale = th.exp(policy.log_std.detach())
            std = scale.numpy()
            # sum over the dimensions of log(sigma) + log(sqrt(2 pi)), the part of log N(a; mu, sigma) that a does not move
            log_normalizer = float((scale.log() + _LOG_SQRT_2PI).sum())

        def sample(mean_actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # Normal.rsample: loc + eps * scale, eps from torch's generator (SB3's draws); then Normal.log_prob with
            # (a - mu)^2 / (2 sigma^2) = eps^2 / 2 (equal to float32 rounding), summed over the action dimensions
            eps = th.randn(mean_actions.shape).numpy()
            actions = mean_actions + eps * std
            return actions, -0.5 * (eps * eps).sum(axis=1) - log_normalizer

    else:

        def sample(mean_actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # CategoricalDistribution: torch's Categorical over the logits (its argument checks skipped)
            distribution = th.distributions.Categorical(logits=th.from_numpy(mean_actions), validate_args=False)
            actions = distribution.sample()
            return actions.numpy(), distribution.log_prob(actions).numpy()

    def forward(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features = features_of(obs)
        values = numpy_forward(critic, features)
        actions, log_prob = sample(numpy_forward(actor, features))
        return actions.reshape((-1, *action_shape)), values, log_prob

    def predict_values(obs: np.ndarray) -> np.ndarray:
        return numpy_forward(critic, features_of(obs))

    return forward, predict_values


def _one_observation(observation: Any) -> Any:
    # A single observation (a terminal one) as a batch of one
    if isinstance(observation, dict):
        return {key: np.asarray(value)[None] for key, value in observation.items()}
    return np.asarray(observation)[None]


# ---------------------------------------------------------------------------------------------------------------------
# The rollout loop, with the policy's calls and the buffer's rows as hooks
# ---------------------------------------------------------------------------------------------------------------------


class RolloutStep:
    """
    How :func:`collect_rollouts` calls the policy and fills the buffer, as SB3's loop does: the hooks an algorithm
    replaces (a recurrent policy's states, the NumPy forward). A step's extra ``inputs`` (MaskableTRPO's action masks)
    reach both the policy's ``forward`` and the buffer's ``add``.

    :param forward: the policy's forward for this rollout (:func:`bind_rollout_forward`), or None for the policy itself
    """

    def __init__(self, algorithm: OnPolicyAlgorithm, forward: RolloutForward | None = None) -> None:
        self.algorithm = algorithm
        self.policy = algorithm.policy
        self.device = algorithm.device
        self.forward: RolloutForward = forward if forward is not None else algorithm.policy

    def act(self, obs: Any, **inputs: Any) -> tuple[np.ndarray, th.Tensor, th.Tensor]:
        """:return: the actions (an array), their values and log-probabilities (tensors) at the observations ``obs``"""
        with th.no_grad():
            obs_tensor = obs_as_tensor(obs, self.device)
            actions, values, log_probs = self.forward(obs_tensor, **inputs)
        return actions.cpu().numpy(), values, log_probs

    def terminal_value(self, observation: Any, env_index: int) -> Any:
        """:return: the value of env ``env_index``'s terminal observation, to bootstrap a truncated episode"""
        terminal_obs = self.policy.obs_to_tensor(observation)[0]
        with th.no_grad():
            return self.policy.predict_values(terminal_obs)[0]

    def add(self, buffer: RolloutBuffer, *row: Any, **inputs: Any) -> None:
        """Store one step (``RolloutBuffer.add``'s row)."""
        buffer.add(*row, **inputs)

    def last_values(self, new_obs: Any, dones: np.ndarray) -> th.Tensor:
        """:return: the values of the observations after the rollout's last step, for GAE"""
        with th.no_grad():
            return self.policy.predict_values(obs_as_tensor(new_obs, self.device))


class NumpyRolloutStep(RolloutStep):
    """
    :class:`RolloutStep` with the NumPy forward (:func:`bind_numpy_forward`) and the buffer's arrays written in place
    (``RolloutBuffer.add``'s values, without its copies), for SB3's ``RolloutBuffer`` and ``DictRolloutBuffer`` without
    gSDE. Values and log-probabilities are tensors sharing the arrays' memory, as SB3's callbacks read them.
    """

    def __init__(self, algorithm: OnPolicyAlgorithm, forward: NumpyForward, predict_values: NumpyValues) -> None:
        super().__init__(algorithm)
        self.numpy_forward = forward
        self.predict_values = predict_values

    def act(self, obs: Any, **inputs: Any) -> tuple[np.ndarray, th.Tensor, th.Tensor]:
        actions, values, log_probs = self.numpy_forward(obs)
        return actions, th.from_numpy(values), th.from_numpy(log_probs)

    def terminal_value(self, observation: Any, env_index: int) -> Any:
        return self.predict_values(_one_observation(observation))[0, 0]

    def add(self, buffer: RolloutBuffer, *row: Any, **inputs: Any) -> None:
        # RolloutBuffer.add, writing into the arrays directly
        obs, actions, rewards, episode_starts, values, log_probs = row
        position = buffer.pos
        if isinstance(buffer, DictRolloutBuffer):
            for key, buffer_observations in buffer.observations.items():
                buffer_observations[position] = obs[key]
        else:
            buffer.observations[position] = obs
        buffer.actions[position] = actions.reshape((buffer.n_envs, buffer.action_dim))
        buffer.rewards[position] = rewards
        buffer.episode_starts[position] = episode_starts
        buffer.values[position] = values.numpy().reshape(-1)
        buffer.log_probs[position] = log_probs.numpy()
        buffer.pos += 1
        buffer.full = buffer.pos == buffer.buffer_size

    def last_values(self, new_obs: Any, dones: np.ndarray) -> th.Tensor:
        return th.from_numpy(self.predict_values(new_obs))


def collect_rollouts(
    algorithm: OnPolicyAlgorithm,
    env: VecEnv,
    callback: BaseCallback,
    rollout_buffer: RolloutBuffer,
    n_rollout_steps: int,
    step: RolloutStep,
    step_inputs: Callable[[VecEnv], dict[str, Any]],
) -> bool:
    """
    The rollout loop of every algorithm of the family: SB3's ``OnPolicyAlgorithm.collect_rollouts`` step for step (the
    same calls, callbacks and locals), with the policy's calls and the buffer's rows through ``step``'s hooks and each
    step's extra inputs from ``step_inputs(env)``. ``tests/test_rollout.py`` pins the buffer, bit for bit, against SB3's
    PPO and sb3-contrib's RecurrentPPO and MaskablePPO.

    :return: True when the rollout was completed, False when a callback stopped it
    """
    assert algorithm._last_obs is not None, "No previous observation was provided"
    policy = algorithm.policy
    policy.set_training_mode(False)
    n_steps = 0
    rollout_buffer.reset()
    # Sample new weights for the state dependent exploration
    if algorithm.use_sde:
        policy.reset_noise(env.num_envs)
    callback.on_rollout_start()
    # What does not change during a rollout, looked up once
    sde_sample_freq = algorithm.sde_sample_freq if algorithm.use_sde else 0
    action_space = algorithm.action_space
    box = isinstance(action_space, spaces.Box)
    unscale = box and policy.squash_output
    low, high = (action_space.low, action_space.high) if isinstance(action_space, spaces.Box) else (0.0, 0.0)
    discrete = isinstance(action_space, spaces.Discrete)
    gamma = algorithm.gamma
    n_envs = env.num_envs

    while n_steps < n_rollout_steps:
        if sde_sample_freq > 0 and n_steps % sde_sample_freq == 0:
            policy.reset_noise(n_envs)
        inputs = step_inputs(env)
        actions, values, log_probs = step.act(algorithm._last_obs, **inputs)
        clipped_actions = actions
        if unscale:
            # Unscale the actions to match env bounds if they were previously squashed (scaled in [-1, 1])
            clipped_actions = policy.unscale_action(clipped_actions)
        elif box:
            # Clip the actions to avoid out of bound error, as we are sampling from an unbounded Gaussian (np.clip's
            # result, with two ufunc calls instead of its Python wrapper)
            clipped_actions = np.minimum(np.maximum(actions, low), high)
        new_obs, rewards, dones, infos = env.step(clipped_actions)
        algorithm.num_timesteps += n_envs

        callback.update_locals(locals())
        if not callback.on_step():
            return False
        algorithm._update_info_buffer(infos, dones)
        n_steps += 1
        if discrete:
            actions = actions.reshape(-1, 1)

        # Handle timeout by bootstrapping with value function (SB3's GitHub issue #633)
        for idx, done in enumerate(dones):
            if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                rewards[idx] += gamma * step.terminal_value(infos[idx]["terminal_observation"], idx)

        step.add(
            rollout_buffer, algorithm._last_obs, actions, rewards, algorithm._last_episode_starts, values, log_probs, **inputs
        )
        algorithm._last_obs = new_obs  # type: ignore[assignment]
        algorithm._last_episode_starts = dones

    values = step.last_values(new_obs, dones)
    rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
    callback.update_locals(locals())
    callback.on_rollout_end()
    return True
