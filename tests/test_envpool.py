"""The optional EnvPool backend (sb3_trpo.zoo.envpool): SB3's VecEnv conventions, spaces, both ways between backends."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

pytest.importorskip("envpool", reason='EnvPool is an optional dependency: pip install "sb3_trpo[envpool]"')

from sb3_trpo import TRPO
from sb3_trpo.zoo.envpool import EnvPoolVecEnv, envpool_vec_env_cls, make_envpool_vec_env

TINY = dict(net_arch=[16])


def test_spaces_are_gymnasiums():
    env = EnvPoolVecEnv("Hopper-v5", 2, seed=0)
    reference = gym.make("Hopper-v5")
    assert env.observation_space == reference.observation_space and env.action_space == reference.action_space
    observations = env.reset()
    assert observations.shape == (2, 11) and observations.dtype == reference.observation_space.dtype
    env.close()


def test_sb3_conventions_at_the_end_of_an_episode():
    env = EnvPoolVecEnv("Hopper-v5", 2, seed=0, env_kwargs=dict(max_episode_steps=5))
    env.reset()
    actions = np.zeros((2, 3), dtype=np.float32)
    for _ in range(4):
        observations, rewards, dones, infos = env.step(actions)
        assert not dones.any() and rewards.dtype == np.float32 and infos == [{}, {}]
    observations, rewards, dones, infos = env.step(actions)
    assert dones.all()
    for index in range(2):
        # Reset at once: the returned observation starts the next episode; the last one is in the infos
        assert infos[index]["TimeLimit.truncated"] is True
        assert infos[index]["terminal_observation"].shape == (11,)
        assert not np.allclose(infos[index]["terminal_observation"], observations[index])
    observations, _, dones, _ = env.step(actions)
    assert not dones.any()
    env.close()


def test_seeding_reproduces_and_separates():
    def first_steps(seed: int) -> np.ndarray:
        env = EnvPoolVecEnv("HalfCheetah-v5", 2, seed=0)
        env.seed(seed)
        trajectory = [env.reset()]
        for _ in range(3):
            trajectory.append(env.step(np.full((2, 6), 0.3, dtype=np.float32))[0])
        env.close()
        return np.stack(trajectory)

    assert np.array_equal(first_steps(7), first_steps(7))
    assert not np.array_equal(first_steps(7), first_steps(8))


def test_a_model_moves_between_backends(tmp_path):
    th.set_num_threads(1)
    # Trained on EnvPool, evaluated on gymnasium (and loaded with a gymnasium env: the spaces match)
    model = TRPO(
        "MlpPolicy", make_envpool_vec_env("Hopper-v5", 2, seed=0), n_steps=128, batch_size=128, policy_kwargs=TINY, seed=0
    )
    model.learn(512)
    assert model.num_timesteps == 512 and len(model.ep_info_buffer) > 0  # VecMonitor's episode statistics
    model.save(tmp_path / "envpool_trained")
    loaded = TRPO.load(tmp_path / "envpool_trained", env=make_vec_env("Hopper-v5", n_envs=1, seed=1))
    mean, _ = evaluate_policy(loaded, loaded.get_env(), n_eval_episodes=2)
    assert np.isfinite(mean)
    # Trained on gymnasium, run on EnvPool
    model = TRPO("MlpPolicy", "Hopper-v5", n_steps=128, batch_size=128, policy_kwargs=TINY, seed=0).learn(256)
    model.set_env(make_envpool_vec_env("Hopper-v5", 1, seed=2))
    model.learn(256, reset_num_timesteps=False)
    mean, _ = evaluate_policy(model, make_envpool_vec_env("Hopper-v5", 1, seed=3), n_eval_episodes=2)
    assert np.isfinite(mean)


def test_make_vec_env_builds_envpool_from_the_factories():
    env = make_vec_env("Hopper-v5", n_envs=3, seed=4, vec_env_cls=envpool_vec_env_cls)
    assert isinstance(env.unwrapped, EnvPoolVecEnv) and env.num_envs == 3 and env.reset().shape == (3, 11)
    env.close()
    with pytest.raises(ValueError, match=r"`env_id` 'Pendulum-v0-not-there' is not an EnvPool task"):
        EnvPoolVecEnv("Pendulum-v0-not-there", 1)


def test_cli_trains_on_envpool(tmp_path, monkeypatch, capsys):
    # `python -m sb3_trpo train` in this process (main, what __main__ calls; tests/test_cli.py runs it as a subprocess)
    from sb3_trpo.zoo.cli import main

    monkeypatch.chdir(tmp_path)
    returncode = main(
        ["train", "--env", "Hopper-v5", "--vec-env", "envpool", "-n", "512",
         "--seed", "0", "--final-eval-episodes", "2", "--num-threads", "1", "--eval-freq", "-1",
         "-params", "n_steps:128", "batch_size:128", "n_critic_updates:1"],
    )  # fmt: skip
    stdout, stderr = capsys.readouterr()
    assert returncode == 0, stderr[-3000:]
    assert "Evaluation of the final model over 2 episodes" in stdout
    assert TRPO.load(tmp_path / "logs" / "trpo" / "Hopper-v5_1" / "Hopper-v5.zip").n_steps == 128
    # The run's arguments record its VecEnv (the Zoo's parser, which knows dummy and subproc only, never saw it)
    args_file = tmp_path / "logs" / "trpo" / "Hopper-v5_1" / "Hopper-v5" / "args.yml"
    args = yaml.load(args_file.read_text(), Loader=yaml.UnsafeLoader)  # the Zoo writes an OrderedDict
    assert args["vec_env"] == "envpool"
    assert main(["train", "--env", "Hopper-v5", "--vec-env", "ray"]) == 2
    assert "--vec-env must be one of dummy, subproc, envpool, got 'ray'" in capsys.readouterr().err
