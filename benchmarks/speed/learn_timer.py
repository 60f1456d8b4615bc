"""
Seconds of ``TRPO.learn(N)`` on Hopper-v5 after a 2048-step warm-up, one torch thread: the same script for two trees
(``PYTHONPATH=<tree> taskset -c 1 python benchmarks/speed/learn_timer.py 16384``), for ``lean_core_ab.json``.
"""

import sys
import time

import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_trpo import TRPO

th.set_num_threads(1)
env = VecNormalize(make_vec_env("Hopper-v5", n_envs=2, seed=0))
model = TRPO(
    "MlpPolicy",
    env,
    n_steps=1024,
    batch_size=128,
    n_critic_updates=20,
    target_kl=0.02,
    policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64])),
    seed=0,
)
model.learn(2048)
start = time.perf_counter()
model.learn(int(sys.argv[1]) if len(sys.argv) > 1 else 16384, reset_num_timesteps=False)
print(f"LEARN {time.perf_counter() - start:.3f}")
