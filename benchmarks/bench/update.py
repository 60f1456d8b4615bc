"""
Time one TRPO update (``train()`` alone) of sb3_trpo against sb3-contrib's TRPO, on the same data and weights
(``python -m benchmarks bench update``).

For each config: both algorithms are built on the same environment, seed and hyperparameters; ours gets the policy
weights of contrib's (same ``ActorCriticPolicy`` class, so the state dict transfers); one rollout is collected with
contrib's model and copied into both. Every timed call starts from the same weights, buffer, optimizer state and
RNG state, so every call does the same work. Calls are interleaved (contrib, ours, contrib, ours, ...), on one core
and one torch thread (run under ``taskset -c 1``).

Damping: our KL is the KL of the JOINT action distribution (summed over the d action dimensions), contrib's averages
over action dimensions too, so contrib's Fisher is ours / d. Ours runs with ``cg_damping = d * contrib_damping``, which
makes the two damped systems proportional, hence the same search direction (checked: cosine of the two CG solutions).

Usage::

    taskset -c 1 python -m benchmarks bench update --configs hopper halfcheetah --updates 20 --json bench.json

End to end (``learn()`` against the env alone, sb3-contrib and PPO): ``bench learn``.
"""

import argparse
import copy
import functools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import sb3_contrib
import sb3_contrib.trpo.trpo as contrib_trpo_module
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import sb3_trpo
import sb3_trpo.common.on_policy_ng as our_trpo_module
from benchmarks.bench import Snapshot, patched, restore, snapshot, timed


class TinyImageEnv(gym.Env):
    """Channel-first 3x36x36 uint8 images; reward 1 when the action names the brightest channel. 100 steps."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 255, (3, 36, 36), dtype=np.uint8)
        self.action_space = spaces.Discrete(3)
        self._t = 0
        self._obs = np.zeros((3, 36, 36), dtype=np.uint8)

    def _draw(self) -> np.ndarray:
        self._obs = self.np_random.integers(0, 256, (3, 36, 36), dtype=np.uint8)
        return self._obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == int(self._obs.reshape(3, -1).mean(axis=1).argmax()))
        self._t += 1
        return self._draw(), reward, False, self._t >= 100, {}


MUJOCO = dict(batch_size=128, n_steps=1024, gamma=0.99, gae_lambda=0.95, sub_sampling_factor=1, cg_max_steps=25,
              cg_damping=0.1, n_critic_updates=20, learning_rate=1e-3)  # fmt: skip


@dataclass
class Config:
    env_id: str | Callable[[], gym.Env]
    n_envs: int
    kwargs: dict[str, Any]
    policy: str = "MlpPolicy"
    normalize: bool = False
    policy_kwargs: dict[str, Any] = field(default_factory=dict)


# RL Zoo's TRPO settings (rl_zoo3/hyperparams/trpo.yml): CartPole-v1, Pendulum-v1, the MuJoCo defaults
CONFIGS: dict[str, Config] = {
    "cartpole": Config(
        "CartPole-v1",
        2,
        dict(n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98, learning_rate=1e-3, n_critic_updates=20),
    ),
    "pendulum": Config("Pendulum-v1", 2, dict(n_steps=1024, gamma=0.9, n_critic_updates=15, use_sde=True, sde_sample_freq=4)),
    "hopper": Config("Hopper-v5", 2, dict(MUJOCO), normalize=True),
    "halfcheetah": Config(
        "HalfCheetah-v5",
        2,
        dict(MUJOCO, n_steps=4096, target_kl=0.04),
        normalize=True,
        policy_kwargs=dict(net_arch=dict(pi=[256, 256], vf=[256, 256])),
    ),
    "cnn": Config(TinyImageEnv, 2, dict(n_steps=256, batch_size=128, n_critic_updates=10), policy="CnnPolicy"),
}


def make_env(config: Config, seed: int) -> VecEnv:
    env = make_vec_env(config.env_id, n_envs=config.n_envs, seed=seed)
    return VecNormalize(env) if config.normalize else env


def n_action_dims(action_space: spaces.Space) -> int:
    """Number of action dimensions contrib's KL averages over (1 for Discrete and MultiDiscrete: one KL per sample)."""
    if isinstance(action_space, (spaces.Box, spaces.MultiBinary)):
        return int(np.prod(action_space.shape))
    return 1


def build_pair(config: Config, seed: int, fisher_product: str = "gauss_newton") -> tuple[Any, Any]:
    """Contrib's and our TRPO on the same env, same weights, one rollout collected by contrib's and copied into ours."""
    env = make_env(config, seed)
    kwargs: dict[str, Any] = dict(config.kwargs)
    common: dict[str, Any] = dict(policy_kwargs=config.policy_kwargs, seed=seed, device="cpu", verbose=0)
    contrib = sb3_contrib.TRPO(config.policy, env, **kwargs, **common)
    ours_kwargs = dict(kwargs, cg_damping=kwargs.get("cg_damping", 0.1) * n_action_dims(env.action_space))
    ours = sb3_trpo.TRPO(config.policy, env, **ours_kwargs, **common, fisher_product=fisher_product)
    ours.policy.load_state_dict(contrib.policy.state_dict())
    for model in (contrib, ours):
        model.set_logger(configure(None, []))
    _, callback = contrib._setup_learn(contrib.n_steps * env.num_envs, None)
    callback.on_training_start(locals(), globals())
    assert contrib.env is not None
    contrib.collect_rollouts(contrib.env, callback, contrib.rollout_buffer, contrib.n_steps)
    ours.rollout_buffer = copy.deepcopy(contrib.rollout_buffer)
    return contrib, ours


def capture_result(store: list) -> Callable[[Callable], Callable]:
    def wrapper(function: Callable) -> Callable:
        def captured(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            store.append(result)
            return result

        return captured

    return wrapper


def direction_cosine(contrib: Any, ours: Any, state: tuple[Snapshot, Snapshot], seed: int) -> dict[str, float]:
    """Cosine similarity of the two CG solutions (natural-gradient directions) computed by each ``train()``."""
    contrib_x: list[th.Tensor] = []
    ours_cg: list[Any] = []
    restore(contrib, state[0], seed)
    with patched(contrib_trpo_module, "conjugate_gradient_solver", capture_result(contrib_x)):
        contrib.train()
    restore(ours, state[1], seed)
    with patched(our_trpo_module, "conjugate_gradient", capture_result(ours_cg)):
        ours.train()
    cosine = th.nn.functional.cosine_similarity(contrib_x[0], ours_cg[0].x, dim=0)
    return {"cosine": float(cosine), "ours_cg_iterations": ours_cg[0].n_iter, "contrib_cg_iterations": contrib.cg_max_steps}


def breakdown(ours: Any, state: Snapshot, seed: int, repeats: int) -> dict[str, float]:
    """Median share of our train() time per section, by wrapping the pure functions and methods train() calls."""
    shares: dict[str, list[float]] = {}
    for _ in range(repeats):
        times: dict[str, float] = {}
        restore(ours, state, seed)
        with (
            patched(ours, "_policy_objective", functools.partial(timed, times, "gradient")),
            patched(ours, "_search_direction", functools.partial(timed, times, "fisher+cg")),
            patched(ours, "_apply_step", functools.partial(timed, times, "line_search")),
            patched(ours, "_fit_critic", functools.partial(timed, times, "critic")),
        ):
            start = time.perf_counter()
            ours.train()
            total = time.perf_counter() - start
        parts = ("gradient", "fisher+cg", "line_search", "critic")
        sections = {part: times[part] for part in parts}
        sections["other"] = total - sum(sections.values())
        for key, value in sections.items():
            shares.setdefault(key, []).append(value / total)
    return {key: statistics.median(values) for key, values in shares.items()}


def policy_pass_seconds(model: Any, repeats: int = 20) -> float:
    """One forward + backward of the actor's log-probability over the whole batch."""
    data = next(copy.deepcopy(model.rollout_buffer).get(batch_size=None))
    actions = data.actions.long().flatten() if isinstance(model.action_space, spaces.Discrete) else data.actions
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        model.policy.get_distribution(data.observations).log_prob(actions).mean().backward()
        times.append(time.perf_counter() - start)
        model.policy.zero_grad(set_to_none=True)
    return statistics.median(times[2:])


def bench_config(name: str, config: Config, updates: int, seed: int) -> dict[str, Any]:
    contrib, ours = build_pair(config, seed)
    states = (snapshot(contrib), snapshot(ours))
    cosine = direction_cosine(contrib, ours, states, seed)
    seconds: dict[str, list[float]] = {"contrib": [], "ours": []}
    for _ in range(updates):
        for label, model, state in (("contrib", contrib, states[0]), ("ours", ours, states[1])):
            restore(model, state, seed)
            start = time.perf_counter()
            model.train()
            seconds[label].append(time.perf_counter() - start)
    shares = breakdown(ours, states[1], seed, repeats=max(3, updates // 4))
    restore(ours, states[1], seed)
    one_pass = policy_pass_seconds(ours)
    contrib_median, ours_median = statistics.median(seconds["contrib"]), statistics.median(seconds["ours"])
    return {
        "config": name,
        "batch": ours.rollout_buffer.buffer_size * ours.rollout_buffer.n_envs,
        "action_dims": n_action_dims(ours.action_space),
        "contrib_s": contrib_median,
        "ours_s": ours_median,
        "speedup": contrib_median / ours_median,
        "ours_passes": ours_median / one_pass,
        "contrib_passes": contrib_median / one_pass,
        "pass_s": one_pass,
        "shares": shares,
        **cosine,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'config':<12}{'batch':>6}{'d':>3}{'contrib s':>11}{'ours s':>9}{'speedup':>9}{'passes':>8}{'(contrib)':>10}"
        f"{'cosine':>9}{'cg it':>6}  ours: gradient / fisher+cg / line search / critic / other"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        s = r["shares"]
        print(
            f"{r['config']:<12}{r['batch']:>6}{r['action_dims']:>3}{r['contrib_s']:>11.4f}{r['ours_s']:>9.4f}"
            f"{r['speedup']:>8.2f}x{r['ours_passes']:>8.1f}{r['contrib_passes']:>10.1f}{r['cosine']:>9.5f}"
            f"{r['ours_cg_iterations']:>3}/{r['contrib_cg_iterations']:<2}  "
            f"{s['gradient']:.0%} / {s['fisher+cg']:.0%} / {s['line_search']:.0%} / {s['critic']:.0%} / {s['other']:.0%}"
        )
    print(
        "median seconds per train(); passes = train() time / one actor forward+backward over the batch; "
        "cosine of the CG directions with our cg_damping = d * contrib's (d = action dims; joint-KL Fisher = d * contrib's)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``bench update``."""
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--updates", type=int, default=20, help="timed train() calls per algorithm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=str, default=None, help="save the results here")


def main(args: argparse.Namespace) -> int:
    th.set_num_threads(args.threads)

    output: dict[str, Any] = {"torch": th.__version__, "threads": args.threads}
    results = []
    for name in args.configs:
        results.append(bench_config(name, CONFIGS[name], args.updates, args.seed))
        print(f"[done {name}]", flush=True)
    print_table(results)
    output["updates"] = results
    if args.json:
        with open(args.json, "w") as file:
            json.dump(output, file, indent=2)
    return 0
