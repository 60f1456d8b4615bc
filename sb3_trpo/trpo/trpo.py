from typing import Any

import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_trpo.common.natural_gradient import LineSearchResult, backtracking_line_search
from sb3_trpo.common.on_policy_ng import NaturalGradientAlgorithm, StepEvaluator, check_range


class TRPO(NaturalGradientAlgorithm):
    """
    Trust Region Policy Optimization (TRPO)

    Paper: https://arxiv.org/abs/1502.05477
    Code: an independent implementation; sb3-contrib's TRPO (https://github.com/Stable-Baselines-Team/stable-baselines3-contrib)
    and OpenAI Spinning Up (https://github.com/openai/spinningup/) were read as references. Every constructor argument
    of sb3-contrib's TRPO is accepted under the same name, order and default.

    Introduction to TRPO: https://spinningup.openai.com/en/latest/algorithms/trpo.html

    The update is :class:`sb3_trpo.common.on_policy_ng.NaturalGradientAlgorithm`'s (``docs/design.md``, "The update,
    step by step"), with a backtracking line search as the step. The parameters below are the family's one full list.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, or an ``ActorCriticPolicy`` class)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate of the critic's Adam optimizer (the actor's step is set by ``target_kl``);
        a float or a schedule of the progress remaining. Typically 1e-3.
    :param n_steps: The number of steps to run for each environment per update (rollout of n_steps * n_envs samples,
        which must be greater than 1 for the advantage normalization). Typically 1024-8192 in total.
    :param batch_size: Minibatch size of the critic's regression
    :param gamma: Discount factor
    :param cg_max_steps: Maximum number of conjugate-gradient iterations; >= 1, typically 10-25
    :param cg_damping: Damping ``lambda`` of the Fisher-vector product ``(F + lambda * I) v``; >= 0, typically 0.01-0.1
    :param line_search_shrinking_factor: Step-size reduction factor of the backtracking line search
        (``theta_new = theta_old + shrink**j * full_step``); in (0, 1), typically 0.5-0.8
    :param line_search_max_iter: Maximum number of candidates tried by the backtracking line search; >= 1
    :param n_critic_updates: Number of epochs of critic regression per policy update; >= 1, typically 5-20
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE) instead of action noise exploration
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE (-1: only at the rollout's start)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize or not the advantage
    :param target_kl: The trust-region radius ``delta``: every accepted step has ``mean KL(pi_old || pi_theta) <= delta``
        on the rollout batch, and the full step reaches ``delta`` at the KL's quadratic model (not PPO's early-stopping
        threshold); > 0, typically 0.01-0.05. Or a schedule of the progress remaining, or the RL Zoo's
        ``"lin_<value>"`` (not with ``adaptive_kl``).
    :param sub_sampling_factor: Compute the Fisher-vector products on every ``sub_sampling_factor``-th sample only
        (Schulman's thesis, p40-42); >= 1
    :param stats_window_size: Window size for the rollout logging (episodes)
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: the verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run ("auto": the GPU if possible)
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    :param fisher_product: ``"gauss_newton"`` (default): ``J^T M J v``, ``M`` the closed-form Fisher of the action
        distribution, in closed form for MLP actors; ``"double_backward"``: the Hessian-vector product of the KL (the
        reference). The same matrix at a different cost.
    :param ent_coef: Entropy bonus ``ent_coef * mean(H(pi_theta))`` added to the surrogate, in the gradient and in the
        line search's improvement check alike; >= 0, default 0 (off)
    :param adaptive_kl: Whether the radius adapts between updates, within ``[target_kl / 10, 10 * target_kl]``
        (:func:`sb3_trpo.common.natural_gradient.adapt_trust_region_radius`); the radius in use is
        ``target_kl_effective``, logged and saved with the model. Default: False.
    :param cg_warm_start: Whether conjugate gradient starts from the previous update's direction (saved with the
        model). Default: False.
    :param data_parallel: Whether this process is one rank of a data-parallel job over the initialized
        ``torch.distributed`` process group (:mod:`sb3_trpo.common.distributed`): the update is the one of a single
        process holding every rank's rollout, the parameters identical on every rank; ``total_timesteps`` and
        ``num_timesteps`` count all ranks' steps; rank 0 alone reports. Every rank needs the same ``n_steps * n_envs``.
        Not saved with the model (pass it to ``load`` to resume). Default: False.
    :param kl_constraint: What ``target_kl`` bounds: ``"joint"`` (default), the paper's mean ``KL(pi_old || pi_theta)``
        of the joint action distribution; ``"sb3_contrib"``, sb3-contrib's TRPO's ``kl_divergence(pi_theta, pi_old).mean()``
        (averaged over the action dimensions of Box and MultiBinary actions, summed over MultiDiscrete sub-actions), whose
        Fisher is ``F / d``, so that sb3-contrib's hyperparameters give sb3-contrib's trust region. Saved with the model.
    """

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
        line_search_shrinking_factor: float = 0.8,
        line_search_max_iter: int = 10,
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
        shrink = line_search_shrinking_factor
        check_range("line_search_shrinking_factor", shrink, 0 < shrink < 1, "in the open interval (0, 1)")
        check_range("line_search_max_iter", line_search_max_iter, line_search_max_iter >= 1, "an integer >= 1")
        self.line_search_shrinking_factor = line_search_shrinking_factor
        self.line_search_max_iter = line_search_max_iter
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            gamma=gamma,
            cg_max_steps=cg_max_steps,
            cg_damping=cg_damping,
            n_critic_updates=n_critic_updates,
            gae_lambda=gae_lambda,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
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

    def _policy_step(self, evaluate: StepEvaluator, old_objective: float, radius: float) -> LineSearchResult:
        """The backtracking line search of the TRPO paper, Appendix C."""
        return backtracking_line_search(
            evaluate, old_objective, radius, self.line_search_shrinking_factor, self.line_search_max_iter
        )

    def _record_step(self, step: LineSearchResult) -> None:
        # sb3-contrib's key, then ours
        self.logger.record("train/is_line_search_success", float(step.accepted))
        self.logger.record("train/line_search_backtracks", step.n_backtracks)
