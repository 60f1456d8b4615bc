import io
import math
import pathlib
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.nn import functional as F

from sb3_trpo.critic import fast_value_regression, fused_adam_step
from sb3_trpo.fisher import gauss_newton_fisher_vector_product, mlp_fisher_vector_product, supports_gauss_newton
from sb3_trpo.natural_gradient import (
    FisherVectorProduct,
    LineSearchResult,
    backtracking_line_search,
    conjugate_gradient,
    detached_distribution,
    fisher_vector_product,
    flat_grad,
    get_flat_params,
    kl_old_new,
    max_step_length,
    normalize_advantages,
    set_flat_params,
    surrogate_objective,
)
from sb3_trpo.rollout import rollout_forward
from sb3_trpo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, actor_critic_parameters
from sb3_trpo.safety import RejectNonFiniteEnvData, check_finite_rollout, check_model_archive

SelfTRPO = TypeVar("SelfTRPO", bound="TRPO")


def index_observations(observations: PyTorchObs, index: th.Tensor | slice) -> PyTorchObs:
    """
    Select samples from a batch of observations (a tensor, or a dict of tensors for ``Dict`` spaces).

    :param observations: batch of observations, first dimension is the sample
    :param index: indices or slice of the samples to keep
    :return: the selected observations, same structure
    """
    if isinstance(observations, dict):
        return {key: obs[index] for key, obs in observations.items()}
    return observations[index]


def _check_range(name: str, value: float, valid: bool, allowed: str) -> None:
    if not valid:
        raise ValueError(f"`{name}` must be {allowed}, got {value!r}")


class TRPO(OnPolicyAlgorithm):
    """
    Trust Region Policy Optimization (TRPO)

    Paper: https://arxiv.org/abs/1502.05477
    Code: an independent implementation; sb3-contrib's TRPO (https://github.com/Stable-Baselines-Team/stable-baselines3-contrib)
    and OpenAI Spinning Up (https://github.com/openai/spinningup/) were read as references, and every constructor
    argument of sb3-contrib's TRPO is accepted under the same name, order and default.

    Introduction to TRPO: https://spinningup.openai.com/en/latest/algorithms/trpo.html

    Each update: one natural-gradient step of the actor, ``theta_old + shrink**j * beta * F^-1 g``, with ``F^-1 g``
    from conjugate gradient on damped Fisher-vector products and ``j`` from a backtracking line search that accepts
    only ``KL(pi_old || pi_theta) <= target_kl`` (the KL of the joint action distribution, in the paper's direction)
    together with an improved surrogate; then ``n_critic_updates`` epochs of Adam regression of the value function
    on the GAE returns, over the critic's parameters only (so the policy stays where the line search left it).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, or an ``ActorCriticPolicy`` class)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate of the critic's Adam optimizer (the actor's step is set by ``target_kl``);
        a float or a schedule of the progress remaining (from 1 to 0). Typically 1e-3.
    :param n_steps: The number of steps to run for each environment per update
        (i.e. rollout buffer size is n_steps * n_envs where n_envs is number of environment copies running in parallel).
        NOTE: n_steps * n_envs must be greater than 1 (because of the advantage normalization)
        See https://github.com/pytorch/pytorch/issues/29372. Typically 1024-8192 in total.
    :param batch_size: Minibatch size of the critic's regression
    :param gamma: Discount factor
    :param cg_max_steps: Maximum number of conjugate-gradient iterations (Fisher-vector products) to compute the
        search direction ``F^-1 g``; >= 1, typically 10-25
    :param cg_damping: Damping ``lambda`` of the Fisher-vector product ``(F + lambda * I) v``; >= 0, typically 0.01-0.1
    :param line_search_shrinking_factor: Step-size reduction factor of the backtracking line search
        (``theta_new = theta_old + shrink**j * full_step``); in (0, 1), typically 0.5-0.8
    :param line_search_max_iter: Maximum number of candidates tried by the backtracking line search; >= 1
    :param n_critic_updates: Number of epochs of critic regression per policy update; >= 1, typically 5-20
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize or not the advantage
    :param target_kl: The trust-region radius ``delta``: every accepted step satisfies
        ``mean KL(pi_old || pi_theta) <= target_kl`` on the rollout batch (NOT PPO's early-stopping threshold).
        > 0, typically 0.01-0.05.
    :param sub_sampling_factor: Compute the Fisher-vector products on every ``sub_sampling_factor``-th sample only,
        to make the conjugate-gradient step cheaper (the gradient and the line search always use the whole batch);
        see p40-42 of John Schulman's thesis http://joschu.net/docs/thesis.pdf. >= 1.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: the verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    :param fisher_product: How the Fisher-vector products of conjugate gradient are computed (same matrix, different
        cost): ``"gauss_newton"`` (default) as ``J^T M J v`` with ``J`` the Jacobian of the distribution parameters
        (in closed form for MLP actors, elsewhere through graphs built once per update) and ``M`` the closed-form
        Fisher of the action distribution
        (Gaussian, gSDE, categorical, multi-categorical, Bernoulli; any other distribution falls back to double backward);
        ``"double_backward"``: the Hessian-vector product of the mean KL by double backward (the reference).
    """

    fisher_products: ClassVar[tuple[str, ...]] = ("gauss_newton", "double_backward")

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: ActorCriticPolicy
    rollout_buffer: RolloutBuffer

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
        target_kl: float = 0.01,
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
    ):
        if fisher_product not in self.fisher_products:
            raise ValueError(f"`fisher_product` must be one of {self.fisher_products}, got {fisher_product!r}")
        # New checks raise ValueError naming the argument (before any env is built)
        _check_range("target_kl", target_kl, target_kl > 0, "> 0 (the trust-region radius)")
        _check_range("cg_max_steps", cg_max_steps, cg_max_steps >= 1, "an integer >= 1")
        _check_range("cg_damping", cg_damping, cg_damping >= 0, ">= 0")
        _check_range(
            "line_search_shrinking_factor",
            line_search_shrinking_factor,
            0 < line_search_shrinking_factor < 1,
            "in the open interval (0, 1)",
        )
        _check_range("line_search_max_iter", line_search_max_iter, line_search_max_iter >= 1, "an integer >= 1")
        _check_range("n_critic_updates", n_critic_updates, n_critic_updates >= 1, "an integer >= 1")
        _check_range("sub_sampling_factor", sub_sampling_factor, sub_sampling_factor >= 1, "an integer >= 1")
        _check_range("batch_size", batch_size, batch_size >= 1, "an integer >= 1")

        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=0.0,  # entropy bonus is not used by TRPO
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
            supported_action_spaces=(
                spaces.Box,
                spaces.Discrete,
                spaces.MultiDiscrete,
                spaces.MultiBinary,
            ),
        )

        self.normalize_advantage = normalize_advantage
        # Sanity check, otherwise it will lead to noisy gradient and NaN
        # because of the advantage normalization (same checks and messages as SB3 and sb3-contrib)
        if self.env is not None:
            buffer_size = self.env.num_envs * self.n_steps
            if normalize_advantage:
                assert buffer_size > 1, (
                    "`n_steps * n_envs` must be greater than 1. "
                    f"Currently n_steps={self.n_steps} and n_envs={self.env.num_envs}"
                )
            # Check that the rollout buffer size is a multiple of the mini-batch size
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
        # Conjugate gradients parameters
        self.cg_max_steps = cg_max_steps
        self.cg_damping = cg_damping
        # Backtracking line search parameters
        self.line_search_shrinking_factor = line_search_shrinking_factor
        self.line_search_max_iter = line_search_max_iter
        # Trust region radius (delta)
        self.target_kl = target_kl
        self.n_critic_updates = n_critic_updates
        self.sub_sampling_factor = sub_sampling_factor
        self.fisher_product = fisher_product

        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self.actor_params, self.critic_params = actor_critic_parameters(self.policy)
        # The critic gets its own optimizer over the critic's parameters only. It replaces the policy's optimizer
        # (built by SB3 over all parameters) so that `_get_torch_save_params`, save/load and the learning-rate
        # schedule keep working as in SB3.
        optimizer_kwargs = dict(self.policy.optimizer_kwargs)
        if self.policy.optimizer_class is th.optim.Adam and not {"fused", "foreach"} & optimizer_kwargs.keys():
            # The critic's many small Adam steps are overhead-bound: the fused kernel (one op per step instead of
            # a Python loop over parameters) computes the same update, faster. Skipped when the user chose.
            optimizer_kwargs["fused"] = self.device.type in ("cpu", "cuda")
        self.policy.optimizer = self.policy.optimizer_class(
            self.critic_params, lr=self.lr_schedule(1), **optimizer_kwargs  # type: ignore[call-arg]
        )
        # The critic's features extractor is frozen during the critic's epochs when it has no critic parameter:
        # shared (it then belongs to the actor, see sb3_trpo.policies) or parameter-free (e.g. SB3's FlattenExtractor).
        # Its output is then computed once per update instead of once per minibatch.
        critic_ids = {id(param) for param in self.critic_params}
        self._critic_extractor = self.policy.vf_features_extractor
        self._critic_reuses_features = not any(id(param) in critic_ids for param in self._critic_extractor.parameters())
        # On top of frozen features, a plain MLP value function gets closed-form gradients (sb3_trpo.critic)
        self._value_regression = (
            fast_value_regression(self.policy, self.critic_params) if self._critic_reuses_features else None
        )

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        # Reject NaN / inf from the environment at the step it appears, before the user's callbacks see it
        checked = CallbackList([RejectNonFiniteEnvData(), super()._init_callback(callback, progress_bar)])
        checked.init_callback(self)
        return checked

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        SB3's ``collect_rollouts``, with the policy's forward bound once for the whole rollout where it applies.

        The bound forward (:mod:`sb3_trpo.rollout`) gives the same actions, values and log-probabilities as
        ``policy.forward``, bit for bit, at a fraction of its per-step overhead.
        """
        with rollout_forward(self.policy):
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)

    def _policy_terms(
        self, observations: PyTorchObs, actions: th.Tensor, old_log_prob: th.Tensor, advantages: th.Tensor, old_dist: Any
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        Surrogate ``L(theta)`` and mean ``KL(pi_old || pi_theta)`` at the current actor parameters.

        :return: (surrogate, mean KL), scalars
        """
        distribution = self.policy.get_distribution(observations)
        surrogate = surrogate_objective(distribution.log_prob(actions), old_log_prob, advantages)
        return surrogate, kl_old_new(old_dist, distribution).mean()

    def _fisher_vector_product(self, observations: PyTorchObs, distribution: Any, old_dist: Any) -> FisherVectorProduct:
        """
        The damped Fisher-vector product of this update, ``v -> (F + cg_damping * I) v``.

        :param observations: the whole batch
        :param distribution: ``pi_theta`` on the whole batch, with its graph
        :param old_dist: its detached snapshot ``pi_old``
        :return: the product, on flat vectors over the actor parameters
        """
        if self.sub_sampling_factor > 1:
            observations = index_observations(observations, slice(None, None, self.sub_sampling_factor))
        if self.fisher_product == "gauss_newton" and supports_gauss_newton(distribution):
            # F v = J^T M J v with M the closed-form Fisher of the action distribution (sb3_trpo.fisher): in closed
            # form for MLP actors, else through autograd graphs built once
            closed_form = mlp_fisher_vector_product(self.policy, self.actor_params, observations, damping=self.cg_damping)
            if closed_form is not None:
                return closed_form
            return gauss_newton_fisher_vector_product(self.policy, self.actor_params, observations, damping=self.cg_damping)
        # F v = grad_theta((grad_theta KL) . v) by double backward through one retained graph
        if self.sub_sampling_factor > 1:
            distribution = self.policy.get_distribution(observations)
            old_dist = detached_distribution(distribution)
        kl = kl_old_new(old_dist, distribution).mean()
        kl_grad = flat_grad(kl, self.actor_params, create_graph=True)
        return partial(fisher_vector_product, kl_grad, self.actor_params, damping=self.cg_damping)

    def _natural_gradient_step(
        self, observations: PyTorchObs, actions: th.Tensor, advantages: th.Tensor
    ) -> tuple[LineSearchResult, dict[str, float]]:
        """
        One trust-region step of the actor (DESIGN.md, section 2, steps 3 to 9).

        :return: the line-search result and diagnostics for the logger
        """
        params = self.actor_params
        # Snapshot pi_old: detached distribution parameters and log-probs at theta_old. Recomputing them (rather than
        # reading the buffer's log-probs) makes the ratio exactly 1 at theta_old.
        distribution = self.policy.get_distribution(observations)
        old_dist = detached_distribution(distribution)
        log_prob = distribution.log_prob(actions)
        old_log_prob = log_prob.detach()

        # Surrogate L(theta) and the policy gradient g = grad_theta L at theta_old
        surrogate = surrogate_objective(log_prob, old_log_prob, advantages)
        policy_gradient = flat_grad(surrogate, params, retain_graph=True)

        # Fisher-vector products v -> (F + damping * I) v, F the Hessian of the mean KL(pi_old || pi_theta) at
        # theta_old, optionally on every sub_sampling_factor-th sample only
        fvp = self._fisher_vector_product(observations, distribution, old_dist)

        # Search direction s = (F + damping * I)^-1 g by conjugate gradient, then the step length beta
        cg = conjugate_gradient(fvp, policy_gradient, max_iter=self.cg_max_steps)
        # (F + damping * I) s = g - r, with r the residual CG tracks: s^T F s without one more Fisher product
        # (equal to s . fvp(s) up to float rounding, about 1e-7 relative in float32)
        fisher_direction = policy_gradient - cg.residual
        beta = max_step_length(cg.x, fisher_direction, self.target_kl) if bool(th.isfinite(cg.x).all()) else 0.0
        full_step = beta * cg.x
        del fvp  # free the graphs of the Fisher products before the line search

        old_surrogate = float(surrogate.detach())
        old_flat = get_flat_params(params)

        def evaluate(fraction: float) -> tuple[float, float]:
            set_flat_params(params, old_flat + fraction * full_step)
            with th.no_grad():
                new_surrogate, new_kl = self._policy_terms(observations, actions, old_log_prob, advantages, old_dist)
            return float(new_surrogate), float(new_kl)

        try:
            if beta > 0.0:
                result = backtracking_line_search(
                    evaluate, old_surrogate, self.target_kl, self.line_search_shrinking_factor, self.line_search_max_iter
                )
            else:
                # No usable direction (zero or non-finite gradient, curvature that is not positive): no step is tried
                result = LineSearchResult(False, 0.0, 0, 0.0, old_surrogate)
        except BaseException:
            # Interrupted (KeyboardInterrupt, an error in a forward pass) with the actor at a candidate: restore it
            set_flat_params(params, old_flat)
            raise
        if not result.accepted:
            # Restore theta_old exactly
            set_flat_params(params, old_flat)

        diagnostics = {
            "step_skipped": float(beta == 0.0),
            "max_step_length": beta,
            "cg_iterations": float(cg.n_iter),
            "cg_residual": float(cg.residual_norm),
            "surrogate_improvement": result.surrogate - old_surrogate,
        }
        return result, diagnostics

    def _fit_critic(self, observations: PyTorchObs, returns: th.Tensor) -> tuple[float, int]:
        """
        Regress V_phi on the returns: ``n_critic_updates`` epochs of shuffled minibatches (DESIGN.md step 10).

        A minibatch whose loss is not finite is skipped (no optimizer step), so no NaN reaches the critic's weights.

        :return: mean value loss over the minibatches, and the number of skipped minibatches
        """
        # Inputs of the trainable part of the critic: frozen features (a tensor), or the observations
        inputs: Any = observations
        predict_values: Callable[[Any], th.Tensor] = self.policy.predict_values
        if self._critic_reuses_features:
            with th.no_grad():
                inputs = BaseModel.extract_features(self.policy, observations, self._critic_extractor)

            def predict_values(features: th.Tensor) -> th.Tensor:
                return self.policy.value_net(self.policy.mlp_extractor.forward_critic(features))

        optimizer = self.policy.optimizer
        optimizer_step: Callable[[], Any] = optimizer.step
        # The closed-form gradients keep the same .grad tensors, which the fused-Adam shortcut relies on
        try_fused_step = self._value_regression is not None
        # Closed-form gradients with the critic's tensors looked up once for all the minibatches
        value_regression = self._value_regression.bind() if self._value_regression is not None else None
        n_samples = returns.shape[0]
        value_losses: list[float] = []
        n_skipped = 0
        for _ in range(self.n_critic_updates):
            # Shuffle once per epoch; the minibatches are then contiguous views
            permutation = th.randperm(n_samples, device=returns.device)
            epoch_inputs, epoch_returns = index_observations(inputs, permutation), returns[permutation]
            for start in range(0, n_samples, self.batch_size):
                minibatch = slice(start, start + self.batch_size)
                minibatch_inputs: Any = index_observations(epoch_inputs, minibatch)
                minibatch_returns = epoch_returns[minibatch]
                if value_regression is not None:
                    # Same gradient as autograd's, without its graph bookkeeping (sb3_trpo.critic)
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
        mean_loss = sum(value_losses) / len(value_losses) if value_losses else float("nan")
        return mean_loss, n_skipped

    def train(self) -> None:
        """
        Update policy using the currently gathered rollout buffer.
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        # Update the critic's learning rate
        self._update_learning_rate(self.policy.optimizer)

        # Refuse NaN / inf from the environment before anything is updated with it
        check_finite_rollout(self.rollout_buffer)

        # The whole rollout in one batch
        rollout_data = next(self.rollout_buffer.get(batch_size=None))
        actions = rollout_data.actions
        if isinstance(self.action_space, spaces.Discrete):
            # Convert discrete action from float to long
            actions = rollout_data.actions.long().flatten()

        advantages = rollout_data.advantages
        if self.normalize_advantage:
            advantages = normalize_advantages(advantages)

        # Actor: natural-gradient step inside the trust region KL(pi_old || pi_theta) <= target_kl
        line_search, diagnostics = self._natural_gradient_step(rollout_data.observations, actions, advantages)

        # Critic: regression on the GAE returns (the actor's parameters are not touched)
        value_loss, critic_skipped = self._fit_critic(rollout_data.observations, rollout_data.returns)

        self._n_updates += 1
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())

        # Logs: sb3-contrib's keys, then our diagnostics
        self.logger.record("train/policy_objective", line_search.surrogate)
        self.logger.record("train/value_loss", value_loss)
        self.logger.record("train/kl_divergence_loss", line_search.kl)
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/is_line_search_success", float(line_search.accepted))
        if isinstance(getattr(self.policy, "log_std", None), nn.Parameter):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/line_search_backtracks", line_search.n_backtracks)
        self.logger.record("train/critic_skipped_minibatches", critic_skipped)
        for key, value in diagnostics.items():
            self.logger.record(f"train/{key}", value)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    @classmethod
    def load(
        cls: type[SelfTRPO],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfTRPO:
        """
        Load the model from a zip-file (SB3's ``load``, same arguments).

        The archive is checked whole first (every member's CRC, the members TRPO writes), so a truncated or
        corrupted file raises a ``ValueError`` saying so instead of giving a half-loaded model.

        :param path: path to the file (or a file-like object) to load the model from
        :param env: the new environment to run the loaded model on (can be None if you only need prediction)
        :param device: device on which the code should run
        :param custom_objects: objects to replace upon loading (see SB3's ``BaseAlgorithm.load``)
        :param print_system_info: whether to print the system info of the saved model and the current one
        :param force_reset: force a call to ``reset()`` before training
        :param kwargs: extra arguments to change the model when loading
        :return: new model instance with loaded parameters
        """
        check_model_archive(path)
        return super().load(
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

    def learn(
        self: SelfTRPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "TRPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfTRPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
