"""MaskableTRPO: TRPO with invalid action masking, on sb3-contrib's maskable policies, buffers and distributions."""

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableRolloutBuffer
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, RolloutBufferSamples, Schedule
from stable_baselines3.common.vec_env import VecEnv

from sb3_trpo.common.on_policy_ng import check_range
from sb3_trpo.trpo.trpo import TRPO
from sb3_trpo.trpo_mask.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfMasking = TypeVar("SelfMasking", bound="ActionMasking")

MASKABLE_BUFFERS = (MaskableRolloutBuffer, MaskableDictRolloutBuffer)


class ActionMasking:
    """
    Invalid action masking for an algorithm of the family (MaskablePPO's API): mixed in before the algorithm
    (``class MaskableTRPO(ActionMasking, TRPO)``, ``class MaskableRecurrentTRPO(ActionMasking, RecurrentTRPO)``).

    It gives the update the rollout's own masks (the ``_action_masks`` hook of
    :class:`sb3_trpo.common.on_policy_ng.NaturalGradientAlgorithm`), collects the rollout through the algorithm's own
    loop under the masks of each step (the ``_rollout_inputs`` hook: each step's masks are read from the env before
    the step, sampled under by the policy's ``forward`` and stored by the buffer's ``add``, as MaskablePPO's loop
    does), and adds MaskablePPO's ``predict(..., action_masks=...)`` and ``learn(..., use_masking=True)``. The
    algorithm's policy takes ``action_masks`` in ``forward``, ``get_distribution`` and ``predict``; its buffer stores
    them (``add(..., action_masks=...)``) and returns them with the samples.
    """

    _use_masking: bool = True
    policy: Any

    def _policy_constructor_kwargs(self) -> dict[str, Any]:
        # sb3-contrib's maskable policies have no gSDE
        return {}

    def _action_masks(self, batch: RolloutBufferSamples, index: slice | None = None) -> th.Tensor:
        # The masks the rollout was collected under (all valid where it was collected without masks)
        masks: th.Tensor = batch.action_masks  # type: ignore[attr-defined]
        return (masks if index is None else masks[index]).bool()

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        The algorithm's rollout, with the action masks of each step read from ``env``, applied and stored
        (:meth:`_rollout_inputs`); without masks when ``learn`` was called with ``use_masking=False``.

        :raises ValueError: when masking is on and the environment gives no masks
        """
        assert hasattr(rollout_buffer, "action_masks"), "RolloutBuffer doesn't support action masking"
        if self._use_masking and not is_masking_supported(env):
            raise ValueError("Environment does not support action masking. Consider using ActionMasker wrapper")
        return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)  # type: ignore[misc]

    def _rollout_inputs(self, env: VecEnv) -> dict[str, Any]:
        # The masks of the envs' current states (an env's action_masks() method, or the ActionMasker wrapper), for
        # the policy's forward and the buffer's add; None without masking (the buffer then stores all-valid masks)
        return {"action_masks": get_action_masks(env) if self._use_masking else None}

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        Get the policy action from an observation, among the valid actions of ``action_masks`` (MaskablePPO's
        ``predict``).

        :param observation: the input observation
        :param state: The last hidden states (the LSTM states of a recurrent policy; unused by a memoryless one)
        :param episode_start: The last episode starts (recurrent policies reset their states there)
        :param deterministic: Whether or not to return deterministic actions.
        :param action_masks: Action masks to apply to the action distribution (None: every action is valid)
        :return: the model's action and the next hidden state (None for a memoryless policy)
        """
        return self.policy.predict(observation, state, episode_start, deterministic, action_masks=action_masks)

    def learn(
        self: SelfMasking,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "",
        reset_num_timesteps: bool = True,
        use_masking: bool = True,
        progress_bar: bool = False,
    ) -> SelfMasking:
        """
        MaskablePPO's ``learn``, same arguments: ``use_masking=False`` collects and trains without masks.
        """
        self._use_masking = bool(use_masking)
        return super().learn(  # type: ignore[misc]
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


class MaskableTRPO(ActionMasking, TRPO):  # type: ignore[misc]
    """
    Trust Region Policy Optimization (TRPO) with Invalid Action Masking.

    Paper (TRPO): https://arxiv.org/abs/1502.05477; invalid action masking: https://arxiv.org/abs/2006.14171
    Code: an independent implementation, with sb3-contrib's maskable building blocks (policies, distributions,
    rollout buffers, ``get_action_masks``) and MaskablePPO's API.

    TRPO's update (:class:`sb3_trpo.trpo.TRPO`) where every action distribution is the masked one of the rollout's
    own masks: the surrogate, ``pi_old``, the KL (:func:`sb3_trpo.common.natural_gradient.masked_categorical_kl`:
    masked actions contribute exactly 0), the Fisher-vector products (the masked actions' probabilities are 0, so
    they drop out of ``diag(p) - p p^T``) and the line search's checks. Every accepted step satisfies
    ``mean KL(pi_old || pi_theta) <= target_kl`` between the masked distributions. A state with one valid action
    has a zero KL and a zero gradient. Masks are read from the environment each step (its ``action_masks()`` method,
    or sb3-contrib's ``ActionMasker`` wrapper) and stored with the rollout.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, or a ``MaskableActorCriticPolicy``)
    :param env: The environment to learn from (if registered in Gym, can be str); Discrete, MultiDiscrete or
        MultiBinary actions
    :param learning_rate: The learning rate of the critic's Adam optimizer (the actor's step is set by ``target_kl``)
    :param n_steps: The number of steps to run for each environment per update (n_steps * n_envs > 1)
    :param batch_size: Minibatch size of the critic's regression
    :param gamma: Discount factor
    :param cg_max_steps: Maximum number of conjugate-gradient iterations; >= 1
    :param cg_damping: Damping ``lambda`` of the Fisher-vector product ``(F + lambda * I) v``; >= 0
    :param line_search_shrinking_factor: Step-size reduction factor of the backtracking line search; in (0, 1)
    :param line_search_max_iter: Maximum number of candidates tried by the backtracking line search; >= 1
    :param n_critic_updates: Number of epochs of critic regression per policy update; >= 1
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param rollout_buffer_class: Rollout buffer class to use: ``MaskableRolloutBuffer`` or ``MaskableDictRolloutBuffer``
        (or a subclass). If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize or not the advantage
    :param target_kl: The trust-region radius ``delta`` (of the masked distributions' KL); > 0, or a schedule (as TRPO's)
    :param sub_sampling_factor: Compute the Fisher-vector products on every ``sub_sampling_factor``-th sample only; >= 1
    :param stats_window_size: Window size for the rollout logging (episodes)
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: the verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    :param fisher_product: ``"gauss_newton"`` (default, fast) or ``"double_backward"`` (the reference)
    :param ent_coef: Entropy bonus (of the masked distributions) added to the surrogate; >= 0, default 0
    :param adaptive_kl: Whether the radius adapts between updates (see TRPO); default False
    :param cg_warm_start: Whether conjugate gradient starts from the previous update's direction; default False
    :param kl_constraint: What ``target_kl`` bounds: ``"joint"`` (default), the paper's mean ``KL(pi_old || pi_theta)``
        of the joint action distribution; ``"sb3_contrib"``, sb3-contrib's TRPO's quantity, ``KL(pi_theta || pi_old)``
        averaged over the action dimensions of Box and MultiBinary actions (summed over MultiDiscrete sub-actions), so
        that sb3-contrib's hyperparameters (the RL Zoo's ``trpo.yml``) give sb3-contrib's step sizes

    The parameters are documented in full in :class:`sb3_trpo.common.on_policy_ng.NaturalGradientAlgorithm`; there
    is no gSDE (the actions are discrete), as in MaskablePPO.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    _supported_action_spaces = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

    policy: MaskableActorCriticPolicy  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[MaskableActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        cg_max_steps: int = 15,
        cg_damping: float = 0.1,
        line_search_shrinking_factor: float = 0.8,
        line_search_max_iter: int = 10,
        n_critic_updates: int = 10,
        gae_lambda: float = 0.95,
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
        if rollout_buffer_class is not None:
            is_maskable = isinstance(rollout_buffer_class, type) and issubclass(rollout_buffer_class, MASKABLE_BUFFERS)
            check_range(
                "rollout_buffer_class",
                rollout_buffer_class,
                is_maskable,
                "MaskableRolloutBuffer, MaskableDictRolloutBuffer or a subclass",
            )
        self._use_masking = True
        super().__init__(
            policy,  # type: ignore[arg-type]
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            gamma=gamma,
            cg_max_steps=cg_max_steps,
            cg_damping=cg_damping,
            line_search_shrinking_factor=line_search_shrinking_factor,
            line_search_max_iter=line_search_max_iter,
            n_critic_updates=n_critic_updates,
            gae_lambda=gae_lambda,
            use_sde=False,
            sde_sample_freq=-1,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            normalize_advantage=normalize_advantage,
            target_kl=target_kl,
            sub_sampling_factor=sub_sampling_factor,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
            fisher_product=fisher_product,
            ent_coef=ent_coef,
            adaptive_kl=adaptive_kl,
            cg_warm_start=cg_warm_start,
            data_parallel=data_parallel,
            kl_constraint=kl_constraint,
        )

    def _setup_model(self) -> None:
        policy_class = self.policy_class
        is_maskable = isinstance(policy_class, type) and issubclass(policy_class, MaskableActorCriticPolicy)
        check_range(
            "policy", policy_class, is_maskable, "MlpPolicy, CnnPolicy, MultiInputPolicy or a MaskableActorCriticPolicy"
        )
        if self.rollout_buffer_class is None:
            dict_observations = isinstance(self.observation_space, spaces.Dict)
            self.rollout_buffer_class = MaskableDictRolloutBuffer if dict_observations else MaskableRolloutBuffer
        super()._setup_model()
        # Warn when not using CPU with the maskable MlpPolicy (SB3's check names its own class)
        self._maybe_recommend_cpu("MaskableActorCriticPolicy")
