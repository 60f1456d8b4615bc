"""
Evaluation under action masks that keeps a recurrent policy's memory.

sb3-contrib's maskable ``evaluate_policy`` (and ``MaskableEvalCallback``, which calls it) assigns the LSTM states
that ``predict`` returns to a name it never reads when it passes masks, so a recurrent policy is evaluated with a
fresh memory at every step (sb3-contrib 2.9: ``actions, state = model.predict(..., state=states, ...)``). Without masks
SB3's own ``evaluate_policy`` carries the states. The helpers here are SB3's ``evaluate_policy`` and ``EvalCallback``
with the env's current action masks handed to ``predict`` at every step, so that both masks and memory hold; for a
policy without memory they give what sb3-contrib's do.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy as evaluate_policy_without_masks
from stable_baselines3.common.vec_env import VecEnv


class MaskedPredictor:
    """
    A model whose ``predict`` reads the action masks of ``env`` (``get_action_masks``) and passes them on; every other
    attribute is the model's.

    :param model: a model whose ``predict`` takes ``action_masks`` (MaskableTRPO, MaskableRecurrentTRPO, MaskablePPO)
    :param env: the environment the masks are read from (the one being stepped)
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
        """
        :return: the model's actions under the env's current masks, and its next states (LSTM states, or None)
        """
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
    sb3-contrib's maskable ``evaluate_policy`` (same arguments and results), with a recurrent policy's LSTM states
    carried from step to step.

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
        from stable_baselines3.common.vec_env import DummyVecEnv

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
    sb3-contrib's ``MaskableEvalCallback`` (SB3's ``EvalCallback`` with ``use_masking``), evaluating with
    ``evaluate_policy`` above: under the eval env's masks, with a recurrent policy's memory kept.

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
        # SB3's evaluation, with the model seen through MaskedPredictor (saving, logging and normalization reach the
        # model itself)
        model = self.model
        self.model = MaskedPredictor(model, self.eval_env)  # type: ignore[assignment]
        try:
            return super()._on_step()
        finally:
            self.model = model
