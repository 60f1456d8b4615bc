"""MaskableTRPO: TRPO with invalid action masking, on sb3-contrib's maskable policies, buffers and distributions."""

from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_trpo.common.maskable.algorithm import MASKABLE_BUFFERS, ActionMasking
from sb3_trpo.trpo.trpo import TRPO
from sb3_trpo.trpo_mask.policies import CnnPolicy, MlpPolicy, MultiInputPolicy


class MaskableTRPO(ActionMasking, TRPO):  # type: ignore[misc]
    """
    Trust Region Policy Optimization (TRPO) with Invalid Action Masking.

    Paper (TRPO): https://arxiv.org/abs/1502.05477; invalid action masking: https://arxiv.org/abs/2006.14171
    Code: an independent implementation, with sb3-contrib's maskable building blocks (policies, distributions, rollout
    buffers, ``get_action_masks``) and MaskablePPO's API.

    TRPO's update (:class:`sb3_trpo.TRPO`) where every action distribution (``pi_old``, the surrogate, the KL, the
    Fisher-vector products, the line search's checks) is the masked one of the rollout's own masks: masked actions
    contribute exactly 0 to the KL, and every accepted step satisfies ``mean KL(pi_old || pi_theta) <= target_kl``
    between the masked distributions. Masks are read from the environment each step (its ``action_masks()`` method, or
    sb3-contrib's ``ActionMasker`` wrapper) and stored with the rollout.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, or a ``MaskableActorCriticPolicy``)
    :param env: The environment to learn from (if registered in Gym, can be str); Discrete, MultiDiscrete or
        MultiBinary actions
    :param rollout_buffer_class: ``MaskableRolloutBuffer`` or ``MaskableDictRolloutBuffer`` (or a subclass); None:
        chosen from the observation space

    Every other parameter is TRPO's (:class:`sb3_trpo.TRPO`), without gSDE (the actions are discrete), as in
    MaskablePPO.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    _supported_action_spaces = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

    rollout_buffer_classes = MASKABLE_BUFFERS
    _policy_base = MaskableActorCriticPolicy

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
        super()._setup_model()
        # Warn when not using CPU with the maskable MlpPolicy (SB3's check names its own class)
        self._maybe_recommend_cpu("MaskableActorCriticPolicy")
