"""
Evaluation under action masks that keeps a recurrent policy's memory.

With masks, sb3-contrib's maskable ``evaluate_policy`` (and ``MaskableEvalCallback``) drops the LSTM states that
``predict`` returns (sb3-contrib 2.9: ``actions, state = model.predict(..., state=states, ...)``), so a recurrent
policy is evaluated with a fresh memory at every step. Here SB3's ``evaluate_policy`` and ``EvalCallback``, which
carry the states, hand the env's current masks to ``predict``; for a policy without memory they give what
sb3-contrib's do.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy as evaluate_policy_without_masks
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv


class MaskedPredictor:
    """
    A model whose ``predict`` passes on the current action masks of ``env``; every other attribute is the model's.

    :param model: a model whose ``predict`` takes ``action_masks`` (MaskableTRPO, MaskableRecurrentTRPO, MaskablePPO)
    :param env: the environment being stepped
    """

    def __init__(self, model: Any, env: Any) -> None:
        self.model = model
        self.env = env

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """:return: the model's actions under the env's current masks, and its next states (LSTM states, or None)"""
        masks = get_action_masks(self.env)
        return self.model.predict(
            observation, state=state, episode_start=episode_start, deterministic=deterministic, action_masks=masks
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def evaluate_policy(
    model: Any,
    env: Any,
    n_eval_episodes: int = 10,
    deterministic: bool = True,
    render: bool = False,
    callback: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    reward_threshold: float | None = None,
    return_episode_rewards: bool = False,
    warn: bool = True,
    use_masking: bool = True,
) -> tuple[float, float] | tuple[list[float], list[int]]:
    """
    sb3-contrib's maskable ``evaluate_policy`` (same arguments and results), carrying a recurrent policy's LSTM states.

    :param model: the model to evaluate
    :param env: the environment (a ``gym.Env`` or ``VecEnv``) with ``action_masks()`` when ``use_masking``
    :param n_eval_episodes: number of episodes
    :param deterministic: deterministic or stochastic actions
    :param render: render the environment
    :param callback: called after each step with ``locals()`` and ``globals()``
    :param reward_threshold: minimum expected mean return (an ``AssertionError`` below it)
    :param return_episode_rewards: return every episode's return and length instead of their mean and std
    :param warn: warn when the env is not wrapped in a ``Monitor``
    :param use_masking: pass the env's action masks to ``predict``
    :return: mean and std of the episode returns, or the lists of returns and lengths
    """
    if use_masking and not isinstance(env, VecEnv):
        env = DummyVecEnv([lambda: env])
    predictor = MaskedPredictor(model, env) if use_masking else model
    return evaluate_policy_without_masks(
        predictor,
        env,
        n_eval_episodes=n_eval_episodes,
        deterministic=deterministic,
        render=render,
        callback=callback,
        reward_threshold=reward_threshold,
        return_episode_rewards=return_episode_rewards,
        warn=warn,
    )


class MaskableEvalCallback(EvalCallback):
    """
    sb3-contrib's ``MaskableEvalCallback`` (SB3's ``EvalCallback`` with ``use_masking``), keeping a recurrent policy's
    memory under the eval env's masks.

    :param eval_env: the evaluation environment
    :param use_masking: pass the eval env's action masks to ``predict``
    :param kwargs: SB3's ``EvalCallback`` arguments
    """

    def __init__(self, eval_env: Any, *args: Any, use_masking: bool = True, **kwargs: Any) -> None:
        super().__init__(eval_env, *args, **kwargs)
        self.use_masking = use_masking

    def _on_step(self) -> bool:
        if not self.use_masking:
            return super()._on_step()
        # SB3's step with the model seen through MaskedPredictor (its saving, logging and normalization are the model's)
        model = self.model
        self.model = MaskedPredictor(model, self.eval_env)  # type: ignore[assignment]
        try:
            return super()._on_step()
        finally:
            self.model = model
