"""
EnvPool (https://github.com/sail-sg/envpool; ``pip install "sb3_trpo[envpool]"``, Linux x86-64 wheels) as an SB3
``VecEnv``: its C++ envs step a batch at a time, with SB3's conventions (an env that ends is reset at once, its last
observation in ``infos[i]["terminal_observation"]``, ``infos[i]["TimeLimit.truncated"]`` marking a time-limit end,
float32 rewards) and the spaces of ``gymnasium.make(env_id)``, so a model trained on one backend runs on the other.
With the CLI: ``python -m sb3_trpo train --env HalfCheetah-v5 --vec-env envpool``.
"""

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from sb3_trpo.zoo.config import ENVPOOL_INSTALL


class EnvPoolVecEnv(VecEnv):
    """
    An EnvPool pool of ``num_envs`` copies of ``env_id`` as an SB3 ``VecEnv``.

    :param env_id: a task EnvPool has (``envpool.list_all_envs()``) and gymnasium registers, e.g. ``"Hopper-v5"``
    :param num_envs: number of environments
    :param seed: seed of the pool (EnvPool seeds env ``i`` with ``seed + i``); ``seed()`` sets the next reset's
    :param env_kwargs: keyword arguments of ``envpool.make_gymnasium`` (e.g. ``max_episode_steps``)
    """

    def __init__(self, env_id: str, num_envs: int, seed: int = 0, env_kwargs: dict[str, Any] | None = None) -> None:
        try:
            import envpool
        except ImportError as error:
            message = f"the EnvPool backend needs the optional package 'envpool'; install it with: {ENVPOOL_INSTALL}"
            raise ImportError(message) from error
        self._envpool = envpool
        if env_id not in self._envpool.list_all_envs():
            known = sorted(self._envpool.list_all_envs())
            raise ValueError(f"`env_id` {env_id!r} is not an EnvPool task; EnvPool has: {known}")
        reference = gym.make(env_id)
        observation_space, action_space = reference.observation_space, reference.action_space
        reference.close()
        self.env_id = env_id
        self._env_kwargs = dict(env_kwargs or {})
        self._pool = self._make_pool(num_envs, seed)
        pool_action_space = self._pool.action_space
        if self._pool.observation_space.shape != observation_space.shape or pool_action_space.shape != action_space.shape:
            raise ValueError(
                f"EnvPool's {env_id} has observation/action shapes {self._pool.observation_space.shape}/"
                f"{pool_action_space.shape}, gymnasium's {observation_space.shape}/{action_space.shape}"
            )
        self._pool_action_dtype = pool_action_space.dtype
        self._actions: np.ndarray | None = None
        super().__init__(num_envs, observation_space, action_space)

    def _make_pool(self, num_envs: int, seed: int) -> Any:
        return self._envpool.make_gymnasium(self.env_id, num_envs=num_envs, seed=seed, **self._env_kwargs)

    def _observations(self, observations: np.ndarray) -> np.ndarray:
        return np.asarray(observations, dtype=self.observation_space.dtype)

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0] if self._seeds else None
        if seed is not None:
            # EnvPool is seeded when made: a new pool for the new seed
            self._pool.close()
            self._pool = self._make_pool(self.num_envs, int(seed))
        self._reset_seeds()
        self._reset_options()
        observations, _ = self._pool.reset()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._observations(observations)

    def step_async(self, actions: np.ndarray) -> None:
        pool_shape = (self.num_envs, *self._pool.action_space.shape)
        self._actions = np.asarray(actions, dtype=self._pool_action_dtype).reshape(pool_shape)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_async first"
        observations, rewards, terminated, truncated, _ = self._pool.step(self._actions)
        observations = self._observations(observations)
        dones = np.logical_or(terminated, truncated)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        ended = np.flatnonzero(dones)
        for index in ended:
            infos[index]["terminal_observation"] = observations[index].copy()
            infos[index]["TimeLimit.truncated"] = bool(truncated[index] and not terminated[index])
        if len(ended):
            # SB3's convention: reset now and return the first observation of the next episode
            first_observations, _ = self._pool.reset(ended)
            observations[ended] = self._observations(first_observations)
        return observations, np.asarray(rewards, dtype=np.float32), dones, infos

    def close(self) -> None:
        self._pool.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None for _ in self._get_indices(indices)]
        raise AttributeError(f"EnvPoolVecEnv has no per-env attribute {attr_name!r}")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"EnvPoolVecEnv cannot set the per-env attribute {attr_name!r}")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        raise AttributeError(f"EnvPoolVecEnv has no per-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def make_envpool_vec_env(env_id: str, num_envs: int, seed: int = 0, env_kwargs: dict[str, Any] | None = None) -> VecEnv:
    """
    :class:`EnvPoolVecEnv` (the same arguments) with SB3's ``VecMonitor`` (episode returns and lengths in
    ``infos[i]["episode"]``).
    """
    return VecMonitor(EnvPoolVecEnv(env_id, num_envs, seed, env_kwargs))


def envpool_vec_env_cls(env_fns: list[Callable[[], gym.Env]], **vec_env_kwargs: Any) -> VecEnv:
    """
    A ``vec_env_cls`` for SB3's ``make_vec_env`` (and the RL Zoo, which calls it): EnvPool instead of the env factories.

    The first factory is called once to read the task's id (``env.spec.id``); the pool then replaces the factories.
    Gymnasium wrappers and ``Monitor`` files of the factories do not apply to EnvPool's envs.

    :param env_fns: the env factories ``make_vec_env`` built
    :param vec_env_kwargs: keyword arguments for :class:`EnvPoolVecEnv` (``seed``, ``env_kwargs``)
    :return: the monitored EnvPool env
    """
    probe = env_fns[0]()
    spec = probe.unwrapped.spec if probe.unwrapped.spec is not None else probe.spec
    probe.close()
    if spec is None:
        raise ValueError("the EnvPool backend needs environments made from a registered id (env.spec.id)")
    return make_envpool_vec_env(spec.id, len(env_fns), **vec_env_kwargs)
