"""The natural-gradient update shared by the family: :class:`NaturalGradientAlgorithm`, over SB3's ``OnPolicyAlgorithm``."""

import copy
import inspect
import io
import math
import numbers
import pathlib
import warnings
from abc import abstractmethod
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    BaseModel,
    BasePolicy,
    MultiInputActorCriticPolicy,
)
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, RolloutBufferSamples, Schedule
from stable_baselines3.common.utils import LinearSchedule, explained_variance, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.nn import functional as F

from sb3_trpo.common.critic import fast_value_regression, fused_adam_step
from sb3_trpo.common.distributed import DataParallel, Reducer
from sb3_trpo.common.fisher import (
    distribution_fisher_vector_product,
    mlp_fisher_vector_product,
    supports_gauss_newton,
)
from sb3_trpo.common.natural_gradient import (
    CGResult,
    KL_CONSTRAINTS,
    FisherVectorProduct,
    LineSearchResult,
    adapt_trust_region_radius,
    conjugate_gradient,
    constrained_kl,
    detached_distribution,
    entropy_regularized_surrogate,
    fisher_vector_product,
    flat_grad,
    get_flat_params,
    kl_constraint_dimensions,
    kl_old_new,
    max_step_length,
    scaled_fisher_vector_product,
    set_flat_params,
)
from sb3_trpo.common.policies import actor_critic_parameters
from sb3_trpo.common.rollout import (
    NumpyRolloutStep,
    PredictActions,
    RolloutStep,
    bind_numpy_forward,
    bind_rollout_forward,
    collect_rollouts,
    predict_with,
)
from sb3_trpo.common.safety import RejectNonFiniteEnvData, check_finite_rollout, check_model_archive

SelfNaturalGradientAlgorithm = TypeVar("SelfNaturalGradientAlgorithm", bound="NaturalGradientAlgorithm")

#: ``evaluate(fraction) -> (objective, KL(pi_old || pi_theta))`` at ``theta_old + fraction * full_step``
StepEvaluator = Callable[[float], tuple[float, float]]


def index_observations(observations: PyTorchObs, index: th.Tensor | slice) -> PyTorchObs:
    """:return: the samples at ``index`` of a batch of observations (a tensor, or a dict of tensors)"""
    if isinstance(observations, dict):
        return {key: obs[index] for key, obs in observations.items()}
    return observations[index]


def check_range(name: str, value: Any, valid: bool, allowed: str) -> None:
    """Raise a ``ValueError`` naming the argument and what it allows, unless ``valid``."""
    if not valid:
        raise ValueError(f"`{name}` must be {allowed}, got {value!r}")


TRUST_REGION_ALLOWED = (
    "a number > 0, a schedule (a function of the progress remaining, 1 at the start and 0 at the end, like "
    "learning_rate) that is > 0 at the start, or the RL Zoo's 'lin_<value>' (from <value> > 0 down to 0)"
)


def trust_region_radius_schedule(target_kl: Any) -> float | Schedule:
    """
    ``target_kl`` as the algorithms keep it: a float, or a schedule (the RL Zoo's ``"lin_<value>"`` becomes
    ``LinearSchedule(value, 0.0, 1.0)``); anything else raises a ``ValueError`` saying what it allows.
    """
    if isinstance(target_kl, str):
        kind, _, value = target_kl.partition("_")
        try:
            start = float(value)
        except ValueError:
            start = float("nan")
        check_range("target_kl", target_kl, kind == "lin" and math.isfinite(start) and start > 0, TRUST_REGION_ALLOWED)
        return LinearSchedule(start, 0.0, 1.0)
    if callable(target_kl):
        try:
            first = float(target_kl(1.0))
        except (TypeError, ValueError) as error:
            raise ValueError(f"`target_kl` must be {TRUST_REGION_ALLOWED}; calling it at 1.0 failed: {error}") from error
        check_range("target_kl", target_kl, math.isfinite(first) and first > 0, TRUST_REGION_ALLOWED)
        return target_kl
    is_number = isinstance(target_kl, numbers.Real) and not _is_bool(target_kl)
    check_range("target_kl", target_kl, is_number and math.isfinite(target_kl) and target_kl > 0, TRUST_REGION_ALLOWED)
    return float(target_kl)


def scheduled_value(name: str, schedule: float | Schedule, progress_remaining: float) -> float:
    """
    A hyperparameter's value at one update, under the family's rule for schedules (``docs/design.md``, step 0): a value
    ``<= 0`` is 0, no step (``lambda p: x * p`` goes negative on the last rollout of a budget that is not a multiple of
    ``n_steps * n_envs``); one that is not a finite number raises a ``ValueError`` naming ``name``.
    """
    try:
        value = float(schedule(progress_remaining)) if callable(schedule) else float(schedule)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{name}` must give a finite number at every progress remaining; at {progress_remaining:.6g}: {error}"
        ) from error
    if not math.isfinite(value):
        raise ValueError(
            f"`{name}` must give a finite number at every progress remaining; at {progress_remaining:.6g} it gave {value!r}"
        )
    return max(value, 0.0)


def _is_bool(value: Any) -> bool:
    # True / False, also numpy's bool_ (e.g. from a config built with numpy)
    return isinstance(value, (bool, np.bool_))


class PolicyObjective(NamedTuple):
    """
    The policy's side of one update at ``theta_old``.

    :param old_distribution: ``pi_old``, a detached snapshot of the action distribution on the batch
    :param distribution: ``pi_theta`` on the batch, with its graph (for the Fisher products)
    :param old_log_prob: ``log pi_old(a|s)``, detached, shape (batch,)
    :param value: the objective ``L(theta_old)`` (plus ``ent_coef * H``), a Python float
    :param gradient: ``g``, its gradient over the actor parameters, flat, shape (n,)
    """

    old_distribution: Distribution
    distribution: Distribution
    old_log_prob: th.Tensor
    value: float
    gradient: th.Tensor


def constructor_signature(cls: type) -> inspect.Signature:
    """
    The class's call signature, its ``__init__``'s without ``self``: what ``inspect.signature``, ``help()`` and the API
    docs show, rather than the ``(*args, **kwargs)`` of the argument check in ``NaturalGradientAlgorithm.__new__``.
    """
    signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    return signature.replace(parameters=list(signature.parameters.values())[1:])


class NaturalGradientAlgorithm(OnPolicyAlgorithm):
    """
    Base class of the natural-gradient family (TRPO, NPG): SB3's ``OnPolicyAlgorithm`` with a natural-gradient step of
    the actor and a separate regression of the critic.

    It owns all of the update (:meth:`train`; ``docs/design.md``, "The update, step by step") but the step itself: the
    rollout (:mod:`sb3_trpo.common.rollout`), the objective and its gradient ``g``, the direction
    ``s = (F + cg_damping * I)^-1 g`` by conjugate gradient, the full step ``beta * s`` that reaches ``target_kl`` at the
    KL's quadratic model, the critic's regression, the options, save/load and the logs. A subclass takes the step in
    one hook, :meth:`_policy_step`: TRPO backtracks, NPG takes the full step (as Tianshou builds TRPO on NPG).

    The constructor is TRPO's without the line search's two arguments: each parameter is documented in
    :class:`sb3_trpo.TRPO`.
    """

    fisher_products: ClassVar[tuple[str, ...]] = ("gauss_newton", "double_backward")
    _supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (
        spaces.Box,
        spaces.Discrete,
        spaces.MultiDiscrete,
        spaces.MultiBinary,
    )

    # SB3's actor-critic policies under their usual names (each algorithm's policies.py exports the same aliases)
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }

    #: The rollout buffer classes for flat and for Dict observations, chosen when ``rollout_buffer_class`` is None
    rollout_buffer_classes: ClassVar[tuple[type[RolloutBuffer], type[RolloutBuffer]]] = (RolloutBuffer, DictRolloutBuffer)
    #: A variant's policy class: its policies must derive from it, and its buffers from ``rollout_buffer_classes``
    #: (None: any actor-critic policy and rollout buffer, as SB3's PPO takes)
    _policy_base: ClassVar[type[BasePolicy] | None] = None

    policy: ActorCriticPolicy
    rollout_buffer: RolloutBuffer

    #: Hints added to the error for a keyword argument the class does not take, by argument (NPG: no line search)
    _argument_hints: ClassVar[dict[str, str]] = {}
    #: The signature shown for the class (:func:`constructor_signature`), set for each subclass
    __signature__: ClassVar[inspect.Signature]

    def __new__(cls, *args: Any, **kwargs: Any) -> "NaturalGradientAlgorithm":
        # A wrong argument's error names the class called (NPG's __init__ is the base class's), with the class's hint
        # for that argument (copy and pickle call __new__ without arguments: nothing to check)
        if args or kwargs:
            try:
                inspect.signature(cls.__init__).bind(None, *args, **kwargs)
            except TypeError as error:
                hints = [hint for name, hint in cls._argument_hints.items() if name in kwargs]
                raise TypeError(" ".join([f"{cls.__name__}(): {error}", *hints])) from None
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = constructor_signature(cls)

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        cg_max_steps: int = 15,
        cg_damping: float = 0.1,
        n_critic_updates: int = 10,
        gae_lambda: float = 0.95,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = True,
        target_kl: float | str | Schedule = 0.01,
        sub_sampling_factor: int = 1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        *,
        fisher_product: str = "gauss_newton",
        ent_coef: float = 0.0,
        adaptive_kl: bool = False,
        cg_warm_start: bool = False,
        data_parallel: bool = False,
        kl_constraint: str = "joint",
    ):
        check_range("fisher_product", fisher_product, fisher_product in self.fisher_products, f"one of {self.fisher_products}")
        # New checks raise ValueError naming the argument (before any env is built)
        target_kl = trust_region_radius_schedule(target_kl)
        check_range(
            "adaptive_kl", adaptive_kl, not (adaptive_kl and callable(target_kl)), "False when target_kl is a schedule"
        )
        check_range("cg_max_steps", cg_max_steps, cg_max_steps >= 1, "an integer >= 1")
        check_range("cg_damping", cg_damping, cg_damping >= 0, ">= 0")
        check_range("n_critic_updates", n_critic_updates, n_critic_updates >= 1, "an integer >= 1")
        check_range("sub_sampling_factor", sub_sampling_factor, sub_sampling_factor >= 1, "an integer >= 1")
        check_range("batch_size", batch_size, batch_size >= 1, "an integer >= 1")
        is_number = isinstance(ent_coef, (int, float)) and not _is_bool(ent_coef)
        check_range("ent_coef", ent_coef, is_number and math.isfinite(ent_coef) and ent_coef >= 0, "a finite number >= 0")
        for name, flag in (("adaptive_kl", adaptive_kl), ("cg_warm_start", cg_warm_start), ("data_parallel", data_parallel)):
            check_range(name, flag, _is_bool(flag), "True or False")
        check_range("kl_constraint", kl_constraint, kl_constraint in KL_CONSTRAINTS, f"one of {KL_CONSTRAINTS}")
        # data_parallel's reducer is made in _setup_model, once the process group is up
        self.data_parallel = bool(data_parallel)
        self._reducer = Reducer()

        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=float(ent_coef),
            vf_coef=0.0,  # value function is optimized separately
            max_grad_norm=0.0,  # the actor's step is bounded by the trust region, the critic's is not clipped
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=self._supported_action_spaces,
        )

        self.normalize_advantage = normalize_advantage
        # SB3's and sb3-contrib's checks, with their messages
        if self.env is not None:
            buffer_size = self.env.num_envs * self.n_steps
            if normalize_advantage:
                assert buffer_size > 1, (
                    "`n_steps * n_envs` must be greater than 1. "
                    f"Currently n_steps={self.n_steps} and n_envs={self.env.num_envs}"
                )
            untruncated_batches = buffer_size // batch_size
            if buffer_size % batch_size > 0:
                warnings.warn(
                    f"You have specified a mini-batch size of {batch_size},"
                    f" but because the `RolloutBuffer` is of size `n_steps * n_envs = {buffer_size}`,"
                    f" after every {untruncated_batches} untruncated mini-batches,"
                    f" there will be a truncated mini-batch of size {buffer_size % batch_size}\n"
                    f"We recommend using a `batch_size` that is a factor of `n_steps * n_envs`.\n"
                    f"Info: (n_steps={self.n_steps} and n_envs={self.env.num_envs})"
                )
        self.batch_size = batch_size
        self.cg_max_steps = cg_max_steps
        self.cg_damping = cg_damping
        self.cg_warm_start = bool(cg_warm_start)
        # The trust-region radius, and the one in use (adapted between updates with adaptive_kl)
        self.target_kl = target_kl
        self.adaptive_kl = bool(adaptive_kl)
        self.target_kl_effective = float(target_kl(1.0)) if callable(target_kl) else target_kl
        self.n_critic_updates = n_critic_updates
        self.sub_sampling_factor = sub_sampling_factor
        self.fisher_product = fisher_product
        self.kl_constraint = kl_constraint

        if _init_setup_model:
            self._setup_model()

    def _policy_constructor_kwargs(self) -> dict[str, Any]:
        """The policy's constructor arguments besides the spaces, the schedule and ``policy_kwargs``."""
        return {"use_sde": self.use_sde}

    def _make_rollout_buffer(self) -> RolloutBuffer:
        """The rollout buffer, of ``rollout_buffer_class``, built as SB3 builds it."""
        assert self.rollout_buffer_class is not None
        return self.rollout_buffer_class(
            self.n_steps,
            self.observation_space,
            self.action_space,
            device=self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
            **self.rollout_buffer_kwargs,
        )

    def _check_policy_and_buffer_classes(self) -> None:
        """
        Refuse a variant's policy and rollout buffer classes that are not its own (``_policy_base``,
        ``rollout_buffer_classes``), naming the argument; choose the buffer class from the observation space when none is
        given.
        """
        flat_buffer, dict_buffer = self.rollout_buffer_classes
        if self._policy_base is not None:
            policy, buffer = self.policy_class, self.rollout_buffer_class
            allowed = f"{', '.join(self.policy_aliases)} or a {self._policy_base.__name__}"
            check_range("policy", policy, isinstance(policy, type) and issubclass(policy, self._policy_base), allowed)
            if buffer is not None:
                is_own_buffer = isinstance(buffer, type) and issubclass(buffer, self.rollout_buffer_classes)
                allowed = f"{flat_buffer.__name__}, {dict_buffer.__name__} or a subclass"
                check_range("rollout_buffer_class", buffer, is_own_buffer, allowed)
        if self.rollout_buffer_class is None:
            self.rollout_buffer_class = dict_buffer if isinstance(self.observation_space, spaces.Dict) else flat_buffer

    def _setup_model(self) -> None:
        # OnPolicyAlgorithm._setup_model, with the policy's arguments and the rollout buffer of the two hooks above
        self._check_policy_and_buffer_classes()
        self._setup_lr_schedule()
        self._reducer = DataParallel(self.device) if self.data_parallel else Reducer()
        # Each rank its own envs and draws; rank 0 alone reports
        self.set_random_seed(self._reducer.rank_seed(self.seed))
        if self._reducer.rank > 0:
            self.verbose, self.tensorboard_log = 0, None
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space,
            self.action_space,
            self.lr_schedule,
            **self._policy_constructor_kwargs(),
            **self.policy_kwargs,
        )
        self.policy = self.policy.to(self.device)
        # Every rank starts from rank 0's weights
        self._reducer.broadcast_parameters(self.policy)
        self.rollout_buffer = self._make_rollout_buffer()
        self._maybe_recommend_cpu()

        self.actor_params, self.critic_params = actor_critic_parameters(self.policy)
        # cg_warm_start's previous direction (zero: none yet), a tensor so that save/load keeps it
        self._cg_previous_direction = th.zeros(sum(param.numel() for param in self.actor_params), device=self.device)
        self._predict_actions = PredictActions()
        # The critic's own optimizer, over its parameters only, in place of SB3's over all of them (so that save/load
        # and the learning-rate schedule work as in SB3)
        optimizer_kwargs = dict(self.policy.optimizer_kwargs)
        if self.policy.optimizer_class is th.optim.Adam and not {"fused", "foreach"} & optimizer_kwargs.keys():
            # The same update in one kernel: the critic's many small steps are overhead-bound (unless the user chose)
            optimizer_kwargs["fused"] = self.device.type in ("cpu", "cuda")
        self.policy.optimizer = self.policy.optimizer_class(
            self.critic_params, lr=self.lr_schedule(1), **optimizer_kwargs  # type: ignore[call-arg]
        )
        # A critic's features extractor without critic parameters (shared with the actor, or parameter-free) is
        # frozen during the critic's epochs: its output is computed once per update, not once per minibatch
        critic_ids = {id(param) for param in self.critic_params}
        self._critic_extractor = self.policy.vf_features_extractor
        self._critic_reuses_features = not any(id(param) in critic_ids for param in self._critic_extractor.parameters())
        # On top of frozen features, a plain MLP value function gets closed-form gradients (sb3_trpo.common.critic)
        self._value_regression = (
            fast_value_regression(self.policy, self.critic_params) if self._critic_reuses_features else None
        )

    # Attributes rebuilt by `_setup_model` from the policy: never pickled (they are views of the policy's tensors)
    _derived_attributes: ClassVar[tuple[str, ...]] = (
        "_reducer",
        "actor_params",
        "critic_params",
        "_critic_extractor",
        "_critic_reuses_features",
        "_value_regression",
        "_predict_actions",
    )

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *self._derived_attributes, "_cg_previous_direction", "data_parallel"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, torch_variables = super()._get_torch_save_params()
        return state_dicts, [*torch_variables, "_cg_previous_direction"]

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        # Reject NaN / inf from the environment at the step it appears, before the user's callbacks see it; with
        # data_parallel, count all ranks' steps first
        first, last, progress_bar = self._reducer.step_callbacks(progress_bar)
        checked = CallbackList([*first, RejectNonFiniteEnvData(), super()._init_callback(callback, progress_bar), *last])
        checked.init_callback(self)
        return checked

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        SB3's ``predict``, with the actor's forward bound where it applies (the same actions, bit for bit, for a fraction
        of the per-call overhead: :func:`sb3_trpo.common.rollout.predict_with`).
        """
        actions = self._predict_actions.of(self.policy)
        if actions is None:
            return super().predict(observation, state, episode_start, deterministic)
        return predict_with(self.policy, actions, observation, deterministic), state

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        SB3's ``collect_rollouts`` step for step (:func:`sb3_trpo.common.rollout.collect_rollouts`), with the policy's calls
        and the buffer's rows of :meth:`_rollout_step` and the inputs of :meth:`_rollout_inputs`.
        """
        step = self._rollout_step(rollout_buffer)
        return collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps, step, self._rollout_inputs)

    def _rollout_step(self, rollout_buffer: RolloutBuffer) -> RolloutStep:
        """
        The hooks of one rollout: the policy's forward bound once for the rollout where it applies (the same outputs as
        ``policy.forward``, bit for bit); for vector observations, an MLP and the CPU, the NumPy forward. RecurrentTRPO
        carries its LSTM states here.
        """
        if type(rollout_buffer) in (RolloutBuffer, DictRolloutBuffer) and not self.use_sde:
            numpy_policy = bind_numpy_forward(self.policy)
            if numpy_policy is not None:
                return NumpyRolloutStep(self, *numpy_policy)
        return RolloutStep(self, bind_rollout_forward(self.policy))

    def _rollout_inputs(self, env: VecEnv) -> dict[str, Any]:
        """:return: the extra inputs of each rollout step's forward and buffer row (MaskableTRPO: the action masks)"""
        return {}

    # -----------------------------------------------------------------------------------------------------------------
    # The update, step by step
    # -----------------------------------------------------------------------------------------------------------------

    def _whole_rollout(self) -> RolloutBufferSamples:
        """:return: the rollout buffer's samples in one batch (RecurrentTRPO: its padded sequences)"""
        return next(self.rollout_buffer.get(batch_size=None))

    def _policy_batch(self) -> RolloutBufferSamples:
        """:return: the whole rollout as one batch, discrete actions as indices, advantages normalized when asked"""
        rollout_data = self._whole_rollout()
        if isinstance(self.action_space, spaces.Discrete):
            rollout_data = rollout_data._replace(actions=rollout_data.actions.long().flatten())
        if self.normalize_advantage:
            rollout_data = rollout_data._replace(advantages=self._reducer.normalize(rollout_data.advantages))
        return rollout_data

    def _objective(
        self, distribution: Distribution, actions: th.Tensor, old_log_prob: th.Tensor, advantages: th.Tensor
    ) -> th.Tensor:
        """:return: the objective ``L(theta) + ent_coef * mean(H(pi_theta))`` of a distribution on the batch, a scalar"""
        entropy = distribution.entropy() if self.ent_coef > 0 else None
        return entropy_regularized_surrogate(distribution.log_prob(actions), old_log_prob, advantages, entropy, self.ent_coef)

    def _policy_objective(self, batch: RolloutBufferSamples) -> PolicyObjective:
        """:return: ``pi_old``, the objective at ``theta_old`` and its gradient ``g`` (docs/design.md, steps 3 and 4)"""
        # pi_old recomputed (not the buffer's log-probs), so that the ratio is exactly 1 at theta_old; a copy, since
        # SB3's policy overwrites its one distribution object at each call
        distribution = copy.copy(self._distribution_on(batch))
        old_distribution = detached_distribution(distribution)
        old_log_prob = distribution.log_prob(batch.actions).detach()
        objective = self._objective(distribution, batch.actions, old_log_prob, batch.advantages)
        # The gradient and objective of all ranks' samples
        gradient = self._reducer.mean(flat_grad(objective, self.actor_params, retain_graph=True))
        (value,) = self._reducer.mean_values(float(objective.detach()))
        return PolicyObjective(old_distribution, distribution, old_log_prob, value, gradient)

    def _policy_terms(
        self, batch: RolloutBufferSamples, old_log_prob: th.Tensor, old_dist: Distribution
    ) -> tuple[th.Tensor, th.Tensor]:
        """:return: the objective and the bounded KL on the batch at the current actor parameters, scalars"""
        distribution = self._distribution_on(batch)
        objective = self._objective(distribution, batch.actions, old_log_prob, batch.advantages)
        return objective, constrained_kl(old_dist, distribution, self.kl_constraint).mean()

    def _action_masks(self, batch: RolloutBufferSamples, index: slice | None = None) -> th.Tensor | None:
        """
        :return: the action masks of the batch's samples (all, or those at ``index``) as booleans: None here, the rollout's
            own masks in MaskableTRPO (every distribution of the update is taken under them)
        """
        return None

    def _distribution_on(self, batch: RolloutBufferSamples, index: slice | None = None) -> Distribution:
        """:return: ``pi_theta`` on the batch's samples (all, or those at ``index``) under their masks, with its graph"""
        observations = batch.observations if index is None else index_observations(batch.observations, index)
        masks = self._action_masks(batch, index)
        if masks is None:
            return self.policy.get_distribution(observations)
        return self.policy.get_distribution(observations, action_masks=masks)  # type: ignore[call-arg]

    def _fisher_vector_product(
        self, batch: RolloutBufferSamples, distribution: Distribution, old_dist: Distribution
    ) -> FisherVectorProduct:
        """
        :return: the damped Fisher-vector product of the bounded KL, ``v -> (F + cg_damping * I) v`` over the actor's
            parameters (with data_parallel, of all ranks' samples)
        """
        # The Fisher of the bounded KL: F / d, d > 1 for sb3-contrib's mean over action dimensions
        dimensions = kl_constraint_dimensions(self.action_space, self.kl_constraint)
        damping = self.cg_damping * dimensions
        fvp = scaled_fisher_vector_product(
            self._batch_fisher_vector_product(batch, distribution, old_dist, damping), dimensions
        )
        return self._reducer.mean_product(fvp)

    def _batch_fisher_vector_product(
        self, batch: RolloutBufferSamples, distribution: Distribution, old_dist: Distribution, damping: float
    ) -> FisherVectorProduct:
        """
        :return: ``v -> (F + damping * I) v`` for the joint action distribution on this process's batch (every
            ``sub_sampling_factor``-th sample)
        """
        index = slice(None, None, self.sub_sampling_factor) if self.sub_sampling_factor > 1 else None
        observations = batch.observations if index is None else index_observations(batch.observations, index)
        masks = self._action_masks(batch, index)
        if self.fisher_product == "gauss_newton" and supports_gauss_newton(distribution):
            # F v = J^T M J v with M the closed-form Fisher of the action distribution (sb3_trpo.common.fisher): in
            # closed form for MLP actors, else through autograd graphs built once
            policy, params = self.policy, self.actor_params
            closed_form = mlp_fisher_vector_product(policy, params, observations, damping, action_masks=masks)
            if closed_form is not None:
                return closed_form
            # pi_theta computed again, with its own graph
            return distribution_fisher_vector_product(self._distribution_on(batch, index), params, damping)
        # F v = grad_theta((grad_theta KL) . v) by double backward through one retained graph
        if index is not None:
            distribution = self._distribution_on(batch, index)
            old_dist = detached_distribution(distribution)
        kl = kl_old_new(old_dist, distribution).mean()
        kl_grad = flat_grad(kl, self.actor_params, create_graph=True)
        return partial(fisher_vector_product, kl_grad, self.actor_params, damping=damping)

    def _search_direction(self, batch: RolloutBufferSamples, objective: PolicyObjective) -> CGResult:
        """``s = (F + cg_damping * I)^-1 g`` by conjugate gradient (docs/design.md, steps 5 and 6), warm-started if asked."""
        fvp = self._fisher_vector_product(batch, objective.distribution, objective.old_distribution)
        warm_start = self.cg_warm_start and bool(self._cg_previous_direction.any())
        x0 = self._cg_previous_direction if warm_start else None
        cg = conjugate_gradient(fvp, objective.gradient, max_iter=self.cg_max_steps, x0=x0)
        if self.cg_warm_start and bool(th.isfinite(cg.x).all()):
            self._cg_previous_direction = cg.x.detach().clone()
        return cg

    @abstractmethod
    def _policy_step(self, evaluate: StepEvaluator, old_objective: float, radius: float) -> LineSearchResult:
        """
        Take the step along the full natural-gradient step: the one hook of the family.

        :param evaluate: moves the actor to ``theta_old + fraction * full_step`` and measures it
        :param old_objective: the objective at ``theta_old``
        :param radius: the trust-region radius ``delta`` of this update
        :return: the step taken; when not ``accepted``, the caller restores ``theta_old`` exactly
        """

    def _record_step(self, step: LineSearchResult) -> None:
        """Log what is particular to the subclass's step (once per update)."""

    def _apply_step(
        self, batch: RolloutBufferSamples, objective: PolicyObjective, full_step: th.Tensor | None, radius: float
    ) -> LineSearchResult:
        """
        Run :meth:`_policy_step` from ``theta_old``; leave the actor where it accepted, else exactly at ``theta_old``.

        :param full_step: ``beta * s``; None when no step can be sized
        """
        if full_step is None:
            # No usable direction (zero or non-finite gradient, curvature that is not positive): no step is tried
            return LineSearchResult(False, 0.0, 0, 0.0, objective.value)
        params = self.actor_params
        old_flat = get_flat_params(params)

        def evaluate(fraction: float) -> tuple[float, float]:
            set_flat_params(params, old_flat + fraction * full_step)
            with th.no_grad():
                new_objective, new_kl = self._policy_terms(batch, objective.old_log_prob, objective.old_distribution)
            # The candidate's objective and KL over all ranks' samples
            return self._reducer.mean_values(float(new_objective), float(new_kl))  # type: ignore[return-value]

        try:
            step = self._policy_step(evaluate, objective.value, radius)
        except BaseException:
            # Interrupted (KeyboardInterrupt, an error in a forward pass) with the actor at a candidate: restore it
            set_flat_params(params, old_flat)
            raise
        if not step.accepted:
            set_flat_params(params, old_flat)
        return step

    def _fit_critic(self, batch: RolloutBufferSamples) -> tuple[float, int]:
        """
        Regress V_phi on the batch's returns: ``n_critic_updates`` epochs of shuffled minibatches (docs/design.md, step
        10). A minibatch whose loss is not finite is skipped. With ``data_parallel``, every rank fits on all ranks' samples,
        gathered once, in rank 0's order: the regression of one process holding the whole batch.

        :return: mean value loss over the minibatches, and the number of skipped minibatches
        """
        # Inputs of the trainable part of the critic: frozen features (a tensor), or the observations
        observations, returns = batch.observations, batch.returns
        inputs: Any = observations
        predict_values: Callable[[Any], th.Tensor] = self.policy.predict_values
        if self._critic_reuses_features:
            with th.no_grad():
                inputs = BaseModel.extract_features(self.policy, observations, self._critic_extractor)

            def predict_values(features: th.Tensor) -> th.Tensor:
                return self.policy.value_net(self.policy.mlp_extractor.forward_critic(features))

        # With data_parallel, all ranks' samples, in rank 0's orders
        inputs, returns = self._reducer.gather(inputs), self._reducer.gather(returns)
        permutations = self._reducer.permutations(self.n_critic_updates, returns.shape[0], returns.device)

        optimizer = self.policy.optimizer
        optimizer_step: Callable[[], Any] = optimizer.step
        # The fused-Adam shortcut relies on the closed-form gradients keeping the same .grad tensors; bind() looks the
        # critic's tensors up once for all the minibatches
        try_fused_step = self._value_regression is not None
        value_regression = self._value_regression.bind() if self._value_regression is not None else None
        value_losses: list[float] = []
        n_skipped = 0
        for permutation in permutations:
            # One shuffle per epoch; the minibatches are then contiguous views
            epoch_inputs, epoch_returns = index_observations(inputs, permutation), returns[permutation]
            for start in range(0, returns.shape[0], self.batch_size):
                minibatch = slice(start, start + self.batch_size)
                minibatch_inputs: Any = index_observations(epoch_inputs, minibatch)
                minibatch_returns = epoch_returns[minibatch]
                if value_regression is not None:
                    # Same gradient as autograd's, without its graph bookkeeping (sb3_trpo.common.critic)
                    value_loss = value_regression(minibatch_inputs, minibatch_returns)
                else:
                    loss = F.mse_loss(minibatch_returns, predict_values(minibatch_inputs).flatten())
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    value_loss = loss.item()
                if not math.isfinite(value_loss):
                    n_skipped += 1
                    continue
                optimizer_step()
                if try_fused_step:
                    # Adam's state now exists: step with its fused kernel directly (the same update, bit for bit)
                    optimizer_step = fused_adam_step(optimizer) or optimizer.step
                    try_fused_step = False
                value_losses.append(value_loss)
        # Identical already where the ranks' kernels round alike; rank 0's bit for bit everywhere regardless
        self._reducer.broadcast_tensors(self.critic_params)
        mean_loss = sum(value_losses) / len(value_losses) if value_losses else float("nan")
        return mean_loss, n_skipped

    def train(self) -> None:
        """One update from the rollout buffer (the algorithm box of TRPO and NPG; docs/design.md)."""
        # This update's radius and learning rate, read before anything moves: adaptive_kl's radius, else target_kl at
        # the progress remaining (`scheduled_value`: a value <= 0 is no step, a non-finite one raises)
        radius = self.target_kl_effective if self.adaptive_kl else self._scheduled_radius()
        # Switch to train mode (this affects batch norm / dropout); update the critic's learning rate
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        # Refuse NaN / inf from the environment before anything is updated with it
        check_finite_rollout(self.rollout_buffer)
        # With data_parallel: VecNormalize's statistics of all ranks' data, on every rank
        self._reducer.share_running_statistics(self.env)

        # 1. The whole rollout in one batch, GAE advantages normalized
        batch = self._policy_batch()
        # 2. pi_old, the objective L(theta_old) (+ ent_coef * H) and the policy gradient g
        objective = self._policy_objective(batch)
        # 3. Search direction s = (F + cg_damping * I)^-1 g by conjugate gradient on Fisher-vector products
        cg = self._search_direction(batch, objective)
        # 4. Step length beta = sqrt(2 delta / s^T (F + damping I) s): the quadratic model of the KL reaches delta.
        #    (F + damping I) s = g - r, with r the residual CG tracks: no extra Fisher product (radius 0: beta 0)
        usable = bool(th.isfinite(cg.x).all())
        beta = max_step_length(cg.x, objective.gradient - cg.residual, radius) if usable else 0.0
        # 5. The step theta_old + fraction * beta * s (TRPO: backtracking line search; NPG: the full step);
        #    theta_old is restored exactly when no step is accepted
        step = self._apply_step(batch, objective, beta * cg.x if beta > 0.0 else None, radius)
        # 6. The radius of the next update (adaptive_kl)
        if self.adaptive_kl:
            self.target_kl_effective = adapt_trust_region_radius(radius, self._scheduled_radius(), step)
        # 7. Critic: regression on the GAE returns (the actor's parameters are not touched)
        value_loss, critic_skipped = self._fit_critic(batch)
        self._n_updates += 1

        # Logs: sb3-contrib's keys, then our diagnostics
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/policy_objective", step.surrogate)
        self.logger.record("train/value_loss", value_loss)
        self.logger.record("train/kl_divergence_loss", step.kl)
        self.logger.record("train/explained_variance", explained_var)
        if isinstance(getattr(self.policy, "log_std", None), nn.Parameter):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self._record_step(step)
        self.logger.record("train/critic_skipped_minibatches", critic_skipped)
        self.logger.record("train/step_skipped", float(beta == 0.0))
        self.logger.record("train/max_step_length", beta)
        self.logger.record("train/cg_iterations", float(cg.n_iter))
        self.logger.record("train/cg_residual", float(cg.residual_norm))
        self.logger.record("train/surrogate_improvement", step.surrogate - objective.value)
        self.logger.record("train/target_kl_effective", radius)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _scheduled_radius(self) -> float:
        """:return: ``target_kl`` at the current progress remaining (:func:`scheduled_value`)"""
        return scheduled_value("target_kl", self.target_kl, self._current_progress_remaining)

    def _update_learning_rate(self, optimizers: list[th.optim.Optimizer] | th.optim.Optimizer) -> None:
        """SB3's ``_update_learning_rate`` under the family's rule for schedules (:func:`scheduled_value`)."""
        learning_rate = scheduled_value("learning_rate", self.lr_schedule, self._current_progress_remaining)
        self.logger.record("train/learning_rate", learning_rate)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            update_learning_rate(optimizer, learning_rate)

    @classmethod
    def load(
        cls: type[SelfNaturalGradientAlgorithm],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfNaturalGradientAlgorithm:
        """
        SB3's ``load``, same arguments. The archive is checked whole first, so a truncated or corrupted file raises a
        ``ValueError`` saying so; the attributes ``_setup_model`` rebuilds are not read from the file.
        """
        check_model_archive(path)
        derived: dict[str, Any] = dict.fromkeys(cls._derived_attributes)
        return super().load(
            path,
            env=env,
            device=device,
            custom_objects={**derived, **(custom_objects or {})},
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

    def learn(
        self: SelfNaturalGradientAlgorithm,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfNaturalGradientAlgorithm:
        """
        SB3's ``learn``, same arguments; the tensorboard run is named after the algorithm unless ``tb_log_name`` is given.
        With data_parallel, ``total_timesteps`` counts the steps of all ranks.
        """
        # With data_parallel, the VecNormalize statistics every rank starts from
        self._reducer.share_running_statistics(self.env)
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name or type(self).__name__,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


NaturalGradientAlgorithm.__signature__ = constructor_signature(NaturalGradientAlgorithm)
