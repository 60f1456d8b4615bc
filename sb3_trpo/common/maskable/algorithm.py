"""Invalid action masking for the family (MaskablePPO's API on sb3-contrib's maskable policies and buffers)."""

from typing import Any, TypeVar

import numpy as np
import torch as th
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer, MaskableRolloutBuffer
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import MaybeCallback, RolloutBufferSamples
from stable_baselines3.common.vec_env import VecEnv

SelfMasking = TypeVar("SelfMasking", bound="ActionMasking")

MASKABLE_BUFFERS = (MaskableRolloutBuffer, MaskableDictRolloutBuffer)


class ActionMasking:
    """
    Invalid action masking for an algorithm of the family (MaskablePPO's API), mixed in before the algorithm
    (``class MaskableTRPO(ActionMasking, TRPO)``).

    The update takes the rollout's own masks (the ``_action_masks`` hook); the rollout loop reads each step's masks from
    the env before the step, samples under them and stores them (the ``_rollout_inputs`` hook), as MaskablePPO's loop
    does; ``predict(..., action_masks=...)`` and ``learn(..., use_masking=True)`` are MaskablePPO's.
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
        The algorithm's rollout under each step's action masks, read from ``env`` (without masks after
        ``learn(use_masking=False)``).

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
        The policy's action for an observation, among the valid actions of ``action_masks`` (MaskablePPO's ``predict``;
        ``state`` and ``episode_start`` are a recurrent policy's, as RecurrentPPO's).

        :param action_masks: Action masks to apply to the action distribution (None: every action is valid)
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
        """MaskablePPO's ``learn``, same arguments: ``use_masking=False`` collects and trains without masks."""
        self._use_masking = bool(use_masking)
        return super().learn(  # type: ignore[misc]
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
