"""Rollout buffers of MaskableRecurrentTRPO: sb3-contrib's recurrent buffers that also store the action masks."""

from collections.abc import Generator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.vec_env import VecNormalize


class MaskableRecurrentRolloutBufferSamples(NamedTuple):
    """sb3-contrib's ``RecurrentRolloutBufferSamples`` (or its Dict variant) with the padded sequences' action masks."""

    observations: Any  # th.Tensor, or a dict of them
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    lstm_states: RNNStates
    episode_starts: th.Tensor
    mask: th.Tensor
    action_masks: th.Tensor


def action_mask_dims(action_space: spaces.Space) -> int:
    """
    The length of one action mask (sb3-contrib's convention): ``n`` for ``Discrete(n)``, ``sum(nvec)`` for
    ``MultiDiscrete``, ``2 n`` for ``MultiBinary(n)`` (one entry per outcome of each binary action).

    :raises ValueError: for other action spaces
    """
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(np.sum(action_space.nvec))
    if isinstance(action_space, spaces.MultiBinary) and isinstance(action_space.n, int | np.integer):
        return 2 * int(action_space.n)
    raise ValueError(
        f"action_space must be Discrete, MultiDiscrete or a one-dimensional MultiBinary for action masks, not {action_space}"
    )


class _ActionMaskStorage:
    """
    The action masks of each step, stored beside a recurrent buffer's data (all valid unless ``add`` is given
    ``action_masks``), flattened in the buffer's own sequence order, and padded with the sequences: padding steps get
    all-valid masks (their distributions are never used, and stay finite).
    """

    action_space: spaces.Space
    buffer_size: int
    n_envs: int
    pos: int
    generator_ready: bool
    action_masks: np.ndarray

    def reset(self) -> None:
        self.mask_dims = action_mask_dims(self.action_space)
        self.action_masks = np.ones((self.buffer_size, self.n_envs, self.mask_dims), dtype=np.float32)
        super().reset()  # type: ignore[misc]

    def add(self, *args: Any, action_masks: np.ndarray | None = None, **kwargs: Any) -> None:
        """
        :param action_masks: the masks the step's actions were sampled under, shape (n_envs, mask_dims)
        """
        if action_masks is not None:
            self.action_masks[self.pos] = np.asarray(action_masks).reshape((self.n_envs, self.mask_dims))
        super().add(*args, **kwargs)  # type: ignore[misc]

    def get(self, batch_size: int | None = None) -> Generator[MaskableRecurrentRolloutBufferSamples, None, None]:
        if not self.generator_ready:
            # (n_steps, n_envs, mask_dims) -> (n_envs * n_steps, mask_dims), as the recurrent buffer does its arrays
            self.action_masks = self.swap_and_flatten(self.action_masks)  # type: ignore[attr-defined]
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(
        self, batch_inds: np.ndarray, env_change: np.ndarray, env: VecNormalize | None = None
    ) -> MaskableRecurrentRolloutBufferSamples:
        samples = super()._get_samples(batch_inds, env_change, env)  # type: ignore[misc]
        # After the recurrent buffer's own _get_samples: its pad() holds this batch's sequences
        padded_masks = self.pad(self.action_masks[batch_inds], padding_value=1.0)  # type: ignore[attr-defined]
        return MaskableRecurrentRolloutBufferSamples(
            **samples._asdict(), action_masks=padded_masks.reshape(-1, self.mask_dims)
        )


class MaskableRecurrentRolloutBuffer(_ActionMaskStorage, RecurrentRolloutBuffer):  # type: ignore[misc]
    """sb3-contrib's ``RecurrentRolloutBuffer`` that also stores the action masks (``add(..., action_masks=...)``)."""


class MaskableRecurrentDictRolloutBuffer(_ActionMaskStorage, RecurrentDictRolloutBuffer):  # type: ignore[misc]
    """sb3-contrib's ``RecurrentDictRolloutBuffer`` that also stores the action masks (``add(..., action_masks=...)``)."""
