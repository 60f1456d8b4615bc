"""It learns: the RL Zoo's CartPole-v1 TRPO settings reach the maximal return within 100k steps."""

import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_trpo import TRPO


@pytest.mark.expensive
def test_cartpole_reaches_475_within_100k_steps():
    # RL Zoo hyperparams/trpo.yml, CartPole-v1
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = TRPO(
        "MlpPolicy",
        env,
        n_steps=512,
        batch_size=512,
        cg_damping=1e-3,
        gae_lambda=0.98,
        gamma=0.99,
        learning_rate=1e-3,
        n_critic_updates=20,
        seed=0,
    )
    model.learn(100_000)
    mean_return, _ = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1, seed=100), n_eval_episodes=20)
    assert mean_return >= 475
