"""The natural-gradient update of an LSTM policy, on sb3-contrib's recurrent policies and rollout buffers."""

import math
from copy import deepcopy
from typing import Any

import numpy as np
import torch as th
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.utils import obs_as_tensor
from torch.nn import functional as F

from sb3_trpo.common.natural_gradient import distribution_samples
from sb3_trpo.common.on_policy_ng import NaturalGradientAlgorithm
from sb3_trpo.common.rollout import RolloutStep

RECURRENT_BUFFERS = (RecurrentRolloutBuffer, RecurrentDictRolloutBuffer)


def reset_states_at_sequence_starts(
    lstm_states: tuple[th.Tensor, ...], episode_starts: th.Tensor
) -> tuple[tuple[th.Tensor, th.Tensor], th.Tensor]:
    """
    The same LSTM inputs with the episode resets moved into the initial states, so that sb3-contrib's
    ``_process_sequence`` runs each padded sequence in one LSTM call instead of looping over the steps. The buffers cut
    sequences at every episode start, so a start can only be a sequence's first step: zeroing those sequences' initial
    states is exactly the loop's reset.

    :param lstm_states: hidden and cell states at each sequence's first step, shape (n_layers, n_seq, hidden size)
    :param episode_starts: the padded sequences' episode starts, flattened, shape (n_seq * max length,)
    :return: the initial states with the reset applied and episode starts all zero; the inputs unchanged when a start
        is set after a sequence's first step
    """
    n_seq = lstm_states[0].shape[1]
    starts = episode_starts.reshape(n_seq, -1)
    if bool(th.any(starts[:, 1:] != 0.0)):
        return (lstm_states[0], lstm_states[1]), episode_starts
    keep = (1.0 - starts[:, 0]).view(1, n_seq, 1)
    return (lstm_states[0] * keep, lstm_states[1] * keep), th.zeros_like(episode_starts)


class RecurrentRolloutStep(RolloutStep):
    """
    The rollout's hooks (:class:`sb3_trpo.common.rollout.RolloutStep`) for an LSTM policy, as sb3-contrib's
    ``RecurrentPPO.collect_rollouts`` makes them: each step's forward takes the previous step's LSTM states, the buffer
    stores those input states, a truncated episode is bootstrapped under the critic's states after the step, and the
    states carry over to the next rollout (``_last_lstm_states``).
    """

    algorithm: "RecurrentNaturalGradient"
    policy: RecurrentActorCriticPolicy

    def __init__(self, algorithm: "RecurrentNaturalGradient") -> None:
        super().__init__(algorithm)
        self.lstm_states = deepcopy(algorithm._last_lstm_states)

    def act(self, obs: Any, **inputs: Any) -> tuple[np.ndarray, th.Tensor, th.Tensor]:
        with th.no_grad():
            obs_tensor: Any = obs_as_tensor(obs, self.device)
            episode_starts = th.tensor(self.algorithm._last_episode_starts, dtype=th.float32, device=self.device)
            actions, values, log_probs, self.lstm_states = self.policy.forward(
                obs_tensor, self.lstm_states, episode_starts, **inputs
            )
        return actions.cpu().numpy(), values, log_probs

    def terminal_value(self, observation: Any, env_index: int) -> Any:
        terminal_obs: Any = self.policy.obs_to_tensor(observation)[0]
        with th.no_grad():
            critic_states: Any = tuple(state[:, env_index : env_index + 1, :].contiguous() for state in self.lstm_states.vf)
            not_a_start = th.zeros(1, dtype=th.float32, device=self.device)
            return self.policy.predict_values(terminal_obs, critic_states, not_a_start)[0]

    def add(self, buffer: RolloutBuffer, *row: Any, **inputs: Any) -> None:
        buffer.add(*row, lstm_states=self.algorithm._last_lstm_states, **inputs)  # type: ignore[call-arg]
        self.algorithm._last_lstm_states = self.lstm_states

    def last_values(self, new_obs: Any, dones: np.ndarray) -> th.Tensor:
        with th.no_grad():
            episode_starts = th.tensor(dones, dtype=th.float32, device=self.device)
            return self.policy.predict_values(
                obs_as_tensor(new_obs, self.device), self.lstm_states.vf, episode_starts  # type: ignore[arg-type]
            )


class RecurrentNaturalGradient(NaturalGradientAlgorithm):
    """
    The family's update over the padded sequences of an LSTM policy (sb3-contrib's recurrent policies and rollout
    buffers, RecurrentPPO's API), mixed in before the algorithm: ``class RecurrentTRPO(RecurrentNaturalGradient,
    TRPO)``.

    The rollout is one batch of padded sequences, each started from the LSTM states stored with its first step; the
    LSTM is re-run over them for ``pi_old``, the objective, the KL, the Fisher-vector products and each step's checks,
    and only the real samples enter any mean (the KL bound is over real samples only). The critic regresses on
    minibatches of sequences (``batch_size`` steps each) from the critic's stored LSTM states, on the real samples.
    """

    rollout_buffer_classes = RECURRENT_BUFFERS
    _policy_base = RecurrentActorCriticPolicy

    policy: RecurrentActorCriticPolicy
    rollout_buffer: RecurrentRolloutBuffer

    def _setup_model(self) -> None:
        super()._setup_model()
        # The LSTM states of the envs' current step (zero before the first), carried from one rollout to the next
        lstm = self.policy.lstm_actor
        state_shape = (lstm.num_layers, self.n_envs, lstm.hidden_size)
        self._last_lstm_states = RNNStates(
            (th.zeros(state_shape, device=self.device), th.zeros(state_shape, device=self.device)),
            (th.zeros(state_shape, device=self.device), th.zeros(state_shape, device=self.device)),
        )

    def _make_rollout_buffer(self) -> RolloutBuffer:
        # sb3-contrib's recurrent buffers take the shape of the LSTM states they store at each step
        lstm = self.policy.lstm_actor
        buffer_class: Any = self.rollout_buffer_class
        return buffer_class(
            self.n_steps,
            self.observation_space,
            self.action_space,
            (self.n_steps, lstm.num_layers, self.n_envs, lstm.hidden_size),
            device=self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
            **self.rollout_buffer_kwargs,
        )

    def _whole_rollout(self) -> RolloutBufferSamples:
        """
        The rollout as padded sequences (observations, episode starts, the LSTM states at each sequence's start, the padding
        mask) with the per-sample quantities of the real samples only, in the sequences' order.
        """
        sequences = next(self.rollout_buffer.get(batch_size=None))
        real = sequences.mask > 0.5
        return sequences._replace(  # type: ignore[return-value]
            actions=sequences.actions[real],
            old_values=sequences.old_values[real],
            old_log_prob=sequences.old_log_prob[real],
            advantages=sequences.advantages[real],
            returns=sequences.returns[real],
        )

    def _distribution_on(self, batch: RolloutBufferSamples, index: slice | None = None) -> Distribution:
        """
        ``pi_theta`` on the batch's real samples (all, or those at ``index``): the actor's LSTM over the padded sequences
        from their stored initial states (under their action masks, if any), the padding dropped.
        """
        sequences: Any = batch
        # The action masks of the padded sequences, where the algorithm has them (MaskableRecurrentTRPO)
        masks = self._action_masks(batch)
        mask_kwargs = {} if masks is None else {"action_masks": masks}
        lstm_states, episode_starts = reset_states_at_sequence_starts(sequences.lstm_states.pi, sequences.episode_starts)
        distribution, _ = self.policy.get_distribution(sequences.observations, lstm_states, episode_starts, **mask_kwargs)
        real = distribution_samples(distribution, sequences.mask > 0.5)
        return real if index is None else distribution_samples(real, index)

    def _fit_critic(self, batch: RolloutBufferSamples) -> tuple[float, int]:
        """
        Regress V_phi on the returns: ``n_critic_updates`` epochs over the rollout in minibatches of sequences of
        ``batch_size`` steps, drawn from the rollout buffer as RecurrentPPO draws them (sequences in order, each from
        its stored critic LSTM states; ``batch`` holds the same samples, whole), the padding left out of the loss. A
        minibatch whose loss is not finite is skipped. With ``data_parallel``, each rank takes its own minibatches and
        the critic's gradients are averaged over the ranks at each step.

        :return: mean value loss over the minibatches, and the number of skipped minibatches
        """
        optimizer = self.policy.optimizer
        value_losses: list[float] = []
        n_skipped = 0
        for _ in range(self.n_critic_updates):
            for minibatch in self.rollout_buffer.get(self.batch_size):
                real = minibatch.mask > 0.5
                lstm_states, episode_starts = reset_states_at_sequence_starts(
                    minibatch.lstm_states.vf, minibatch.episode_starts
                )
                values = self.policy.predict_values(minibatch.observations, lstm_states, episode_starts)
                loss = F.mse_loss(minibatch.returns[real], values.flatten()[real])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                # (the loss of all ranks: not finite when any rank's is not, so that all skip the step or none)
                value_loss = self._reducer.mean_gradients(self.critic_params, loss.item())
                if not math.isfinite(value_loss):
                    n_skipped += 1
                    continue
                optimizer.step()
                value_losses.append(value_loss)
        mean_loss = sum(value_losses) / len(value_losses) if value_losses else float("nan")
        return mean_loss, n_skipped

    def _rollout_step(self, rollout_buffer: RolloutBuffer) -> RolloutStep:
        # RecurrentPPO's contract: the LSTM states carried through the rollout and on to the next
        assert isinstance(rollout_buffer, RECURRENT_BUFFERS), f"{type(rollout_buffer)} doesn't support recurrent policy"
        return RecurrentRolloutStep(self)
