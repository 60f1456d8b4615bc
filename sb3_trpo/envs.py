"""
Environments with action masks, registered with gymnasium when this module is imported (``sb3_trpo.zoo.register()`` does):
``MaskedTaxi-v4``, ``InvalidActionsDiscrete-v0`` and ``MaskedCueMemory-v0``.
"""

from typing import Any

import gymnasium as gym
import numpy as np
from sb3_contrib.common.envs import InvalidActionEnvDiscrete
from sb3_contrib.common.wrappers import ActionMasker


def taxi_action_mask(env: gym.Env) -> np.ndarray:
    """The valid actions of a (wrapped) Taxi env in its current state (gymnasium's ``TaxiEnv.action_mask``), shape (6,)."""
    taxi = env.unwrapped
    return np.asarray(taxi.action_mask(taxi.s), dtype=bool)  # type: ignore[attr-defined]


def make_masked_taxi(**kwargs: Any) -> gym.Env:
    """
    ``MaskedTaxi-v4``: ``Taxi-v4`` (200 steps per episode) behind sb3-contrib's ``ActionMasker`` with Taxi's own mask
    (moves that do not hit a wall, a pickup only where the passenger is, a drop-off only at the destination with the
    passenger aboard): a real task where masking matters (an illegal pickup or drop-off costs -10).

    :param kwargs: arguments of ``gym.make("Taxi-v4", ...)``
    """
    return ActionMasker(gym.make("Taxi-v4", **kwargs), taxi_action_mask)


def make_invalid_actions_discrete(dim: int = 50, n_invalid_actions: int = 40, ep_length: int = 100) -> gym.Env:
    """
    ``InvalidActionsDiscrete-v0``: sb3-contrib's ``InvalidActionEnvDiscrete`` at a larger size, an identity task whose
    difficulty is the masks.

    :param dim: number of actions (and observations)
    :param n_invalid_actions: actions masked at each step (never the right one)
    :param ep_length: steps per episode
    """
    return InvalidActionEnvDiscrete(dim=dim, ep_length=ep_length, n_invalid_actions=n_invalid_actions)


class MaskedCueMemoryEnv(gym.Env[np.ndarray, np.int64]):
    """
    ``MaskedCueMemory-v0``, a task that needs masks and memory together: remember a cue through a delay, then pick it
    among the actions the mask allows.

    The first observation shows one of ``n_cues`` cues (one-hot); the next ``delay`` observations (a random number
    between ``min_delay`` and ``max_delay``) are blank, and only action 0 ("wait") is valid; at the last step (its
    observation's final entry is 1) "wait" is masked and only two choices are valid: the cue and a random distractor.
    The correct choice earns +1, the distractor -1, and ends the episode. With memory and masks the return is 1;
    without memory a policy can only guess between the two valid choices (expected return 0); without masks it must
    also learn when to act and which choices exist. An invalid action (taken without masks) ends the episode with -1.

    :param n_cues: number of cues (choices are actions 1..n_cues)
    :param min_delay: fewest blank steps between the cue and the choice
    :param max_delay: most blank steps between the cue and the choice
    """

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium.Env declares it an instance attribute)

    def __init__(self, n_cues: int = 6, min_delay: int = 2, max_delay: int = 6) -> None:
        if n_cues < 2:
            raise ValueError(f"`n_cues` must be >= 2 (the cue and a distractor), got {n_cues}")
        if not 0 <= min_delay <= max_delay:
            raise ValueError(
                f"`min_delay` and `max_delay` must satisfy 0 <= min_delay <= max_delay, got {min_delay}, {max_delay}"
            )
        self.n_cues, self.min_delay, self.max_delay = n_cues, min_delay, max_delay
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(n_cues + 1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(n_cues + 1)
        self._cue, self._distractor, self._steps_left = 0, 0, 0

    def _observation(self, show_cue: bool) -> np.ndarray:
        observation = np.zeros(self.n_cues + 1, dtype=np.float32)
        if show_cue:
            observation[self._cue] = 1.0
        observation[-1] = float(self._steps_left == 0)
        return observation

    def action_masks(self) -> np.ndarray:
        """:return: the valid actions: "wait" alone before the choice; the cue and the distractor at the choice"""
        mask = np.zeros(self.n_cues + 1, dtype=bool)
        if self._steps_left > 0:
            mask[0] = True
        else:
            mask[[1 + self._cue, 1 + self._distractor]] = True
        return mask

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """:return: the cue's observation and an empty info (a new cue, distractor and delay are drawn)"""
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.n_cues))
        self._distractor = int((self._cue + self.np_random.integers(1, self.n_cues)) % self.n_cues)
        self._steps_left = 1 + int(self.np_random.integers(self.min_delay, self.max_delay + 1))
        return self._observation(show_cue=True), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """
        :param action: 0 ("wait") or a choice in 1..n_cues
        :return: the next observation, the reward (+1 or -1 at the choice, -1 for an invalid action, else 0), whether
            the episode ended, False (no truncation) and an info
        """
        choice = int(action)
        if not self.action_masks()[choice]:
            return self._observation(show_cue=False), -1.0, True, False, {"invalid_action": True}
        if self._steps_left > 0:
            self._steps_left -= 1
            return self._observation(show_cue=False), 0.0, False, False, {}
        reward = 1.0 if choice == 1 + self._cue else -1.0
        return self._observation(show_cue=False), reward, True, False, {}


def register() -> None:
    """Register the environments with gymnasium (once)."""
    if "MaskedTaxi-v4" not in gym.registry:
        gym.register("MaskedTaxi-v4", entry_point="sb3_trpo.envs:make_masked_taxi")
    if "InvalidActionsDiscrete-v0" not in gym.registry:
        gym.register("InvalidActionsDiscrete-v0", entry_point="sb3_trpo.envs:make_invalid_actions_discrete")
    if "MaskedCueMemory-v0" not in gym.registry:
        gym.register("MaskedCueMemory-v0", entry_point="sb3_trpo.envs:MaskedCueMemoryEnv", max_episode_steps=100)


register()
