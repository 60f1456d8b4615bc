"""
A leaner ``policy.forward`` for collecting rollouts and a leaner ``policy.predict``, with the same outputs as SB3's, bit
for bit.

While collecting a rollout, SB3 calls ``policy(obs)`` once per environment step on a batch of ``n_envs`` observations.
For the small MLP policies TRPO is used with, most of that call's time goes to Python-side work rather than arithmetic:
module calls, distribution objects and their argument checks. :func:`bind_rollout_forward` returns, for the policies
where it applies, a function that computes the same actions, values and log-probabilities with plain tensor operations
in the same order as SB3 and PyTorch do (same kernels, same random draws), with the weights looked up once per rollout.
``tests/test_rollout.py`` checks the outputs are identical to ``policy.forward``'s, and that learning is unchanged.
:func:`bound_predict` does the same for ``predict`` (what ``evaluate_policy``, ``EvalCallback`` and the Zoo's ``enjoy``
call once per step), where SB3's module calls, distribution objects and ``set_training_mode`` walk cost several times
the arithmetic.

It applies to SB3's actor-critic policy classes themselves (not user subclasses, which may override ``forward``) whose
actor is a flat MLP over parameter-free features (:func:`sb3_trpo.common.policies.has_flat_mlp_actor`: a
``FlattenExtractor`` on ``Box`` observations, or a ``CombinedExtractor`` over the vector observations of a ``Dict``),
with an ``MlpExtractor`` of linear layers with tanh or ReLU, a linear value head, and a diagonal Gaussian (without
gSDE) or categorical action distribution. Anything else keeps SB3's ``forward``.
"""

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BaseModel
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from sb3_trpo.common.mlp import AffineLayers, affine_layers, chain_layers, mlp_forward, numpy_forward, numpy_layers
from sb3_trpo.common.policies import has_flat_mlp_actor

RolloutForward = Callable[..., tuple[th.Tensor, th.Tensor, th.Tensor]]


# log(sqrt(2 pi)), the constant of torch.distributions.Normal.log_prob, computed the same way
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def _bind_chain(chain: nn.Module) -> AffineLayers | None:
    layers = chain_layers(chain)
    return None if layers is None else affine_layers(layers)


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


def bind_policy_actions(policy: nn.Module) -> Callable[..., th.Tensor] | None:
    """
    ``policy._predict`` for a policy with a flat MLP actor, or None where it does not apply (as
    :func:`bind_rollout_forward`).

    The returned function takes ``(obs, deterministic=False)`` and returns the actions of SB3's
    ``policy.get_distribution(obs).get_actions(deterministic)``, bit for bit (the same kernels and random draws): the
    mean (Gaussian) or the most likely action (categorical) when deterministic, else a sample. It holds the actor's
    modules and reads their weights at each call, so it stays valid while those modules are the policy's
    (:class:`PredictActions` checks that).

    :param policy: the policy
    :return: the action function, or None (use ``policy._predict``)
    """
    if not has_flat_mlp_actor(policy):
        return None
    chain = chain_layers(policy.mlp_extractor.policy_net)
    head = chain_layers(policy.action_net)
    if chain is None or head is None:
        return None
    layers = chain + head
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
    :func:`bind_policy_actions` for whichever policy ``predict`` is called on, built once and rebuilt only when the
    actor's modules change (another policy after ``load``, a replaced layer); the weights are read at each call.
    """

    def __init__(self) -> None:
        self._modules: tuple[Any, ...] = ()
        self._actions: Callable[..., th.Tensor] | None = None

    def of(self, policy: nn.Module) -> Callable[..., th.Tensor] | None:
        """
        :param policy: the policy
        :return: its bound actions, or None where they do not apply
        """
        modules = _actor_modules(policy)
        unchanged = len(modules) == len(self._modules) and all(
            new is old for new, old in zip(modules, self._modules, strict=True)
        )
        if not unchanged:
            self._modules, self._actions = modules, bind_policy_actions(policy)
        return self._actions


def _keep_training_mode(mode: bool) -> None:
    # set_training_mode while bound_predict is active: the bound actor has no layer whose output depends on the mode
    pass


#: per policy (by id) inside bound_predict, how many calls are: the first installs the bound methods, the last removes
#: them (predict may be called from several threads at once, as SB3's allows)
_BOUND_PREDICT_CALLS: dict[int, int] = {}
_BOUND_PREDICT_LOCK = threading.Lock()


@contextmanager
def bound_predict(policy: nn.Module, actions: Callable[..., th.Tensor] | None) -> Iterator[bool]:
    """
    Within the block, ``policy.predict`` computes its actions with ``actions`` (from :func:`bind_policy_actions`, or
    None: SB3's own): SB3's ``predict`` itself (its checks, ``obs_to_tensor``, clipping to the action space, shapes),
    with the actor's module calls and distribution objects replaced by the same tensor operations, and without the walk
    over every submodule that ``set_training_mode(False)`` makes on each call (the policy is put in evaluation mode
    once, on entry, if it is in training mode: the bound actor's linear layers and activations compute the same in
    either mode). Both replacements shadow the class's methods as instance attributes, installed by the first of
    concurrent calls (threads) and removed when the last one exits, whatever happens inside.

    :param policy: the policy
    :param actions: the policy's bound actions, or None
    :return: (as the context value) whether the bound actions are in use
    """
    key = id(policy)
    with _BOUND_PREDICT_LOCK:
        calls = _BOUND_PREDICT_CALLS.get(key, 0)
        active = actions is not None and (
            calls > 0 or ("_predict" not in vars(policy) and "set_training_mode" not in vars(policy))
        )
        if active:
            if calls == 0:
                if policy.training:
                    policy.set_training_mode(False)  # type: ignore[operator]
                policy._predict = actions  # type: ignore[assignment]
                policy.set_training_mode = _keep_training_mode  # type: ignore[assignment]
            _BOUND_PREDICT_CALLS[key] = calls + 1
    if not active:
        yield False
        return
    try:
        yield True
    finally:
        with _BOUND_PREDICT_LOCK:
            calls = _BOUND_PREDICT_CALLS.pop(key) - 1
            if calls > 0:
                _BOUND_PREDICT_CALLS[key] = calls
            else:
                del policy._predict
                del policy.set_training_mode


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
    The features of parameter-free extractors over vector observations, in NumPy: a ``FlattenExtractor`` on a
    non-image ``Box``, or a ``CombinedExtractor`` whose keys are all non-image ``Box`` (its ``nn.Flatten`` of each
    key, concatenated in the extractor's order: a ``Dict`` holding one ``Box`` gives that ``Box``'s features). The
    actor's and the critic's extractors must be such (they then compute the same features).

    :param policy: the policy
    :return: ``obs -> features`` of shape (batch, features_dim), or None where it does not apply
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
    The rollout forward of :func:`bind_rollout_forward` in NumPy, for small MLPs on the CPU, or None where it does
    not apply (then use :func:`bind_rollout_forward`).

    For the 2 x 17 observations and 64-64 networks of the RL Zoo's MuJoCo settings, each torch operation costs
    microseconds of dispatch for nanoseconds of arithmetic; NumPy's are several times cheaper. The random draws stay
    torch's (the same generator, the same calls as SB3: a standard normal of the actions' shape, or torch's
    categorical sampling), and ``std``, ``log(std)`` and ``std**2`` are computed by torch once per rollout, so the
    actions, values and log-probabilities equal ``policy.forward``'s to float32 rounding (the matrix products'
    summation order is NumPy's BLAS's). Applies where :func:`bind_rollout_forward` applies, with vector observations
    (:func:`_numpy_features`: a ``Box``, or a ``Dict`` of ``Box``) and the policy on the CPU.

    :param policy: the policy
    :return: ``obs -> (actions, values, log_prob)`` and ``obs -> values`` (``predict_values``) on NumPy arrays, or None
    """
    if not has_flat_mlp_actor(policy) or type(policy.value_net) is not nn.Linear or policy.device.type != "cpu":
        return None
    features_of = _numpy_features(policy)
    if features_of is None:
        return None
    chains = [
        chain_layers(module)
        for module in (policy.mlp_extractor.policy_net, policy.action_net, policy.mlp_extractor.value_net, policy.value_net)
    ]
    if any(chain is None for chain in chains):
        return None
    actor_body, head, critic_body, value_head = chains
    assert actor_body is not None and head is not None and critic_body is not None and value_head is not None
    # Copies of the weights: valid for one rollout, during which the weights do not change; bound again for the next
    actor, critic = numpy_layers(actor_body + head), numpy_layers(critic_body + value_head)
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


def collect_rollouts_numpy(
    algorithm: OnPolicyAlgorithm,
    env: VecEnv,
    callback: BaseCallback,
    rollout_buffer: RolloutBuffer,
    n_rollout_steps: int,
    forward: NumpyForward,
    predict_values: NumpyValues,
) -> bool:
    """
    SB3's ``OnPolicyAlgorithm.collect_rollouts``, step for step, with the NumPy forward and direct buffer writes.

    The same sequence as SB3's: eval mode, buffer reset, ``on_rollout_start``; per step the policy's actions (torch's
    random draws), clipping to the action space, ``env.step``, ``num_timesteps``, the callbacks' ``update_locals``
    and ``on_step`` (stopping when it returns False), the info buffer, the bootstrap of truncated episodes with the
    value of their terminal observation, the buffer row; then the last values, GAE, ``on_rollout_end``. The locals
    callbacks read keep SB3's names and types (``values`` and ``log_probs`` are tensors, ``actions`` an array). The
    buffer's arrays are written in place instead of through ``RolloutBuffer.add`` (the same values, without its
    copies), so this runs for SB3's ``RolloutBuffer`` and ``DictRolloutBuffer`` themselves only; without gSDE (no
    noise to resample).

    :param algorithm: the on-policy algorithm (its env state ``_last_obs``, ``_last_episode_starts``)
    :param env: the training environment
    :param callback: the callbacks
    :param rollout_buffer: SB3's ``RolloutBuffer`` (or ``DictRolloutBuffer``)
    :param n_rollout_steps: steps per environment
    :param forward: the policy's forward, from :func:`bind_numpy_forward`
    :param predict_values: the policy's ``predict_values``, from :func:`bind_numpy_forward`
    :return: True when the rollout was completed, False when a callback stopped it
    """
    assert algorithm._last_obs is not None, "No previous observation was provided"
    # Switch to eval mode (this affects batch norm / dropout)
    algorithm.policy.set_training_mode(False)
    n_steps = 0
    rollout_buffer.reset()
    callback.on_rollout_start()
    n_envs = env.num_envs
    bounds: tuple[np.ndarray, np.ndarray] | None = None
    if isinstance(algorithm.action_space, spaces.Box):
        assert not algorithm.policy.squash_output
        bounds = (algorithm.action_space.low, algorithm.action_space.high)
    discrete = isinstance(algorithm.action_space, spaces.Discrete)
    buffer_actions_shape = (n_envs, rollout_buffer.action_dim)
    gamma = algorithm.gamma
    dict_observations = isinstance(rollout_buffer, DictRolloutBuffer)

    while n_steps < n_rollout_steps:
        obs = algorithm._last_obs
        actions, values_array, log_probs_array = forward(obs)  # type: ignore[arg-type]
        # Rescale and perform action: clip, as the Gaussian is unbounded
        # (np.clip's result, with two ufunc calls instead of its Python wrapper)
        clipped_actions = actions if bounds is None else np.minimum(np.maximum(actions, bounds[0]), bounds[1])
        new_obs, rewards, dones, infos = env.step(clipped_actions)
        algorithm.num_timesteps += n_envs

        # Give access to local variables (SB3's names and types)
        values, log_probs = th.from_numpy(values_array), th.from_numpy(log_probs_array)
        callback.update_locals(locals())
        if not callback.on_step():
            return False

        algorithm._update_info_buffer(infos, dones)
        n_steps += 1
        if discrete:
            # Reshape in case of discrete action
            actions = actions.reshape(-1, 1)

        # Handle timeout by bootstrapping with value function (SB3's GitHub issue #633)
        for idx, done in enumerate(dones):
            if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                rewards[idx] += gamma * predict_values(_one_observation(infos[idx]["terminal_observation"]))[0, 0]

        # RolloutBuffer.add, writing into the arrays directly
        position = rollout_buffer.pos
        if dict_observations:
            for key, buffer_observations in rollout_buffer.observations.items():  # type: ignore[attr-defined]
                buffer_observations[position] = obs[key]  # type: ignore[index]
        else:
            rollout_buffer.observations[position] = obs
        rollout_buffer.actions[position] = actions.reshape(buffer_actions_shape)
        rollout_buffer.rewards[position] = rewards
        rollout_buffer.episode_starts[position] = algorithm._last_episode_starts
        rollout_buffer.values[position] = values_array.reshape(-1)
        rollout_buffer.log_probs[position] = log_probs_array
        rollout_buffer.pos += 1
        rollout_buffer.full = rollout_buffer.pos == rollout_buffer.buffer_size
        algorithm._last_obs = new_obs  # type: ignore[assignment]
        algorithm._last_episode_starts = dones

    # Compute value for the last timestep
    values = th.from_numpy(predict_values(new_obs))  # type: ignore[arg-type]
    rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
    callback.update_locals(locals())
    callback.on_rollout_end()
    return True
