"""
Environments with action masks, registered with gymnasium when this module is imported (``sb3_trpo.zoo`` does).

- ``MaskedTaxi-v4``: gymnasium's ``Taxi-v4`` with its own action mask (the moves that do not hit a wall, a pickup
  only where the passenger is, a drop-off only at the destination with the passenger aboard) behind sb3-contrib's
  ``ActionMasker``: a real task where masking matters (an illegal pickup or drop-off costs -10, a move into a wall
  wastes a step).
- ``InvalidActionsDiscrete-v0``: sb3-contrib's ``InvalidActionEnvDiscrete`` at a larger size (50 actions, 40 of them
  masked at each step, the right one never): an identity task whose difficulty is the masks.
"""

from typing import Any

import gymnasium as gym
import numpy as np
from sb3_contrib.common.envs import InvalidActionEnvDiscrete
from sb3_contrib.common.wrappers import ActionMasker


def taxi_action_mask(env: gym.Env) -> np.ndarray:
    """
    The valid actions of a Taxi env in its current state (gymnasium's ``TaxiEnv.action_mask``), as booleans.

    :param env: a (wrapped) Taxi env
    :return: boolean mask of shape (6,)
    """
    taxi = env.unwrapped
    return np.asarray(taxi.action_mask(taxi.s), dtype=bool)  # type: ignore[attr-defined]


def make_masked_taxi(**kwargs: Any) -> gym.Env:
    """
    ``Taxi-v4`` (200 steps per episode) with its action masks, read through ``action_masks()``.

    :param kwargs: arguments of ``gym.make("Taxi-v4", ...)``
    :return: the env, wrapped in sb3-contrib's ``ActionMasker``
    """
    return ActionMasker(gym.make("Taxi-v4", **kwargs), taxi_action_mask)


def make_invalid_actions_discrete(dim: int = 50, n_invalid_actions: int = 40, ep_length: int = 100) -> gym.Env:
    """
    sb3-contrib's ``InvalidActionEnvDiscrete`` (it has ``action_masks()``).

    :param dim: number of actions (and observations)
    :param n_invalid_actions: actions masked at each step (never the right one)
    :param ep_length: steps per episode
    :return: the env
    """
    return InvalidActionEnvDiscrete(dim=dim, ep_length=ep_length, n_invalid_actions=n_invalid_actions)


def register() -> None:
    """Register ``MaskedTaxi-v4`` and ``InvalidActionsDiscrete-v0`` with gymnasium (once)."""
    if "MaskedTaxi-v4" not in gym.registry:
        gym.register("MaskedTaxi-v4", entry_point="sb3_trpo.envs:make_masked_taxi")
    if "InvalidActionsDiscrete-v0" not in gym.registry:
        gym.register("InvalidActionsDiscrete-v0", entry_point="sb3_trpo.envs:make_invalid_actions_discrete")


register()
