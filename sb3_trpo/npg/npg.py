import math
from typing import ClassVar

from sb3_trpo.common.natural_gradient import LineSearchResult
from sb3_trpo.common.on_policy_ng import NaturalGradientAlgorithm, StepEvaluator


class NPG(NaturalGradientAlgorithm):
    """
    Natural Policy Gradient (NPG), with the trust-region step length

    Paper: https://papers.nips.cc/paper/2073-a-natural-policy-gradient (Kakade, 2001); the step length from the TRPO
    paper, https://arxiv.org/abs/1502.05477 (Appendix C), as in Rajeswaran et al., 2017, https://arxiv.org/abs/1703.02660
    Code: an independent implementation; Tianshou's NPG (https://github.com/thu-ml/tianshou) and OpenAI Spinning Up
    were read as references.

    TRPO without the line search (``docs/design.md``, "The update, step by step"): the full step, which reaches
    ``KL = target_kl`` at the quadratic model of the KL, taken unless its objective or KL is not finite. The same
    constructor as TRPO's minus ``line_search_shrinking_factor`` and ``line_search_max_iter``.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, or an ``ActorCriticPolicy`` class)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate of the critic's Adam optimizer (the actor's step is set by ``target_kl``)
    :param n_steps: The number of steps to run for each environment per update (n_steps * n_envs > 1)
    :param batch_size: Minibatch size of the critic's regression
    :param gamma: Discount factor
    :param cg_max_steps: Maximum number of conjugate-gradient iterations; >= 1, typically 10-25
    :param cg_damping: Damping ``lambda`` of the Fisher-vector product ``(F + lambda * I) v``; >= 0, typically 0.01-0.1
    :param n_critic_updates: Number of epochs of critic regression per policy update; >= 1, typically 5-20
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE (-1: once per rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize or not the advantage
    :param target_kl: The step size as a KL ``delta``, reached by the full step at the quadratic model (the KL reached
        is logged, not bounded); > 0, typically 0.005-0.05, or a schedule, or ``"lin_<value>"``
    :param sub_sampling_factor: Compute the Fisher-vector products on every ``sub_sampling_factor``-th sample only; >= 1
    :param stats_window_size: Window size for the rollout logging (episodes)
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: the verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    :param fisher_product: How the Fisher-vector products are computed (same matrix): ``"gauss_newton"`` (default,
        fast) or ``"double_backward"`` (the reference)
    :param ent_coef: Entropy bonus ``ent_coef * mean(H(pi_theta))`` added to the objective; >= 0, default 0 (off)
    :param adaptive_kl: Whether the step size adapts between updates (x1.5 after a KL at most ``radius / 1.5``, /1.5
        after a KL above ``1.5 * radius`` or a non-finite step, within ``[target_kl / 10, 10 * target_kl]``); default False
    :param cg_warm_start: Whether conjugate gradient starts from the previous update's direction; default False
    :param data_parallel: Whether this process is one rank of a data-parallel job (``torch.distributed``), every mean
        of the update taken over all ranks' samples; default False
    :param kl_constraint: What ``target_kl`` bounds: ``"joint"`` (default), the paper's ``KL(pi_old || pi_theta)``; or
        ``"sb3_contrib"``, sb3-contrib's TRPO's KL averaged over action dimensions, for its hyperparameters

    Each parameter in detail: :class:`sb3_trpo.common.on_policy_ng.NaturalGradientAlgorithm`.
    """

    _argument_hints: ClassVar[dict[str, str]] = {
        name: f"NPG has no line search, so no `{name}`: it takes the full step (use TRPO for a backtracking line search)."
        for name in ("line_search_shrinking_factor", "line_search_max_iter")
    }

    def _policy_step(self, evaluate: StepEvaluator, old_objective: float, radius: float) -> LineSearchResult:
        """The full step, refused only when its objective or KL is not finite (``radius`` is already in its length)."""
        objective, kl = evaluate(1.0)
        if math.isfinite(objective) and math.isfinite(kl):
            return LineSearchResult(True, 1.0, 0, kl, objective)
        return LineSearchResult(False, 0.0, 0, 0.0, old_objective)
