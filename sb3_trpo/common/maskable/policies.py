"""sb3-contrib's recurrent actor-critic policies with sb3-contrib's masked action distributions (MaskableRecurrentTRPO's)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableDistribution, make_masked_proba_distribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import Schedule

#: Action masks as the policies take them: booleans (or 0/1) of shape (batch, mask_dims), or None for all valid
ActionMasks = np.ndarray | th.Tensor | None


class MaskableRecurrentActorCriticPolicy(RecurrentActorCriticPolicy):
    """
    sb3-contrib's ``RecurrentActorCriticPolicy`` (LSTM actor, and critic as configured by ``shared_lstm`` /
    ``enable_critic_lstm``) whose action distribution is sb3-contrib's masked one (``MaskableActorCriticPolicy``'s):
    ``forward``, ``get_distribution``, ``evaluate_actions`` and ``predict`` take RecurrentPPO's arguments plus
    MaskablePPO's ``action_masks`` (None: every action valid). Discrete, MultiDiscrete and MultiBinary actions; no
    gSDE. Every constructor argument is ``RecurrentActorCriticPolicy``'s.

    The masks reach the distribution built inside sb3-contrib's recurrent forward passes through
    ``_get_action_dist_from_latent``, set for the duration of one call (:meth:`_masked`), so that the LSTM's handling
    of sequences and episode starts stays sb3-contrib's own.
    """

    _pending_action_masks: ActionMasks = None

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        extractor = super().make_features_extractor()
        # nn.LSTM takes a Python int as its input size; some spaces give flatdim as a NumPy integer
        extractor._features_dim = int(extractor.features_dim)
        return extractor

    def _build(self, lr_schedule: Schedule) -> None:
        if not isinstance(self.action_space, spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary):
            raise ValueError(
                f"action_space must be Discrete, MultiDiscrete or MultiBinary for masked actions, not {self.action_space}"
            )
        if self.use_sde:
            raise ValueError("use_sde must be False: masked action distributions have no gSDE")
        # MaskableActorCriticPolicy's networks (its action head is the masked distribution's), over the LSTM's output
        self.action_dist = make_masked_proba_distribution(self.action_space)
        MaskableActorCriticPolicy._build(self, lr_schedule)  # type: ignore[arg-type]

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> MaskableDistribution:
        action_logits = self.action_net(latent_pi)
        distribution = self.action_dist.proba_distribution(action_logits=action_logits)
        assert isinstance(distribution, MaskableDistribution)
        if self._pending_action_masks is not None:
            distribution.apply_masking(self._pending_action_masks)
        return distribution

    @contextmanager
    def _masked(self, action_masks: ActionMasks) -> Iterator[None]:
        """
        Within the block, every action distribution the policy builds is masked by ``action_masks``; None keeps the
        masks of an enclosing block (``predict`` reaches ``get_distribution`` through sb3-contrib's ``_predict``).
        """
        enclosing = self._pending_action_masks
        if action_masks is not None:
            self._pending_action_masks = action_masks
        try:
            yield
        finally:
            self._pending_action_masks = enclosing

    def forward(  # type: ignore[override]
        self,
        obs: th.Tensor,
        lstm_states: RNNStates,
        episode_starts: th.Tensor,
        deterministic: bool = False,
        action_masks: ActionMasks = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, RNNStates]:
        """RecurrentActorCriticPolicy's ``forward``, sampling among the valid actions of ``action_masks``."""
        with self._masked(action_masks):
            return super().forward(obs, lstm_states, episode_starts, deterministic)

    def get_distribution(  # type: ignore[override]
        self,
        obs: th.Tensor,
        lstm_states: tuple[th.Tensor, th.Tensor],
        episode_starts: th.Tensor,
        action_masks: ActionMasks = None,
    ) -> tuple[MaskableDistribution, tuple[th.Tensor, ...]]:
        """RecurrentActorCriticPolicy's ``get_distribution``, the distribution masked by ``action_masks``."""
        with self._masked(action_masks):
            distribution, states = super().get_distribution(obs, lstm_states, episode_starts)
        return distribution, states  # type: ignore[return-value]

    def evaluate_actions(  # type: ignore[override]
        self,
        obs: th.Tensor,
        actions: th.Tensor,
        lstm_states: RNNStates,
        episode_starts: th.Tensor,
        action_masks: ActionMasks = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """RecurrentActorCriticPolicy's ``evaluate_actions``, under ``action_masks``."""
        with self._masked(action_masks):
            return super().evaluate_actions(obs, actions, lstm_states, episode_starts)

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: ActionMasks = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """RecurrentActorCriticPolicy's ``predict`` (actions and the next LSTM states), among the valid actions."""
        with self._masked(action_masks):
            return super().predict(observation, state, episode_start, deterministic)


class MaskableRecurrentActorCriticCnnPolicy(MaskableRecurrentActorCriticPolicy):
    """:class:`MaskableRecurrentActorCriticPolicy` over image observations (``NatureCNN`` features by default)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule, **kwargs: Any):
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


class MaskableRecurrentMultiInputActorCriticPolicy(MaskableRecurrentActorCriticPolicy):
    """:class:`MaskableRecurrentActorCriticPolicy` over ``Dict`` observations (``CombinedExtractor`` by default)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule, **kwargs: Any):
        kwargs.setdefault("features_extractor_class", CombinedExtractor)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
