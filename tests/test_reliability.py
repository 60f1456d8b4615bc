"""Reliability: bad data from the environment, interruption, and faults inside the update never corrupt the model."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_trpo import TRPO
from sb3_trpo.common.natural_gradient import get_flat_params

TINY = dict(net_arch=[16])


class CorruptAt(gym.Wrapper):
    """Return a NaN/inf observation or reward at one step (counted from the first reset) of one env."""

    def __init__(self, env: gym.Env, at_step: int, what: str, value: float = float("nan")) -> None:
        super().__init__(env)
        self.at_step, self.what, self.value, self.n_steps = at_step, what, value, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.n_steps == self.at_step:
            if self.what == "reward":
                reward = self.value
            elif isinstance(obs, dict):
                obs = {key: np.full_like(value, self.value) for key, value in obs.items()}
            else:
                obs = np.full_like(obs, self.value)
        self.n_steps += 1
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize("what,value", [("reward", float("nan")), ("reward", float("inf")), ("observation", float("nan"))])
def test_non_finite_env_data_raises_before_any_update(what, value):
    # env index 1 goes bad at its 37th step (0-based step 37 in the first rollout of 64 steps)
    env = DummyVecEnv([lambda: gym.make("Pendulum-v1"), lambda: CorruptAt(gym.make("Pendulum-v1"), 37, what, value)])
    model = TRPO("MlpPolicy", env, n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    before = get_flat_params(list(model.policy.parameters()))
    with pytest.raises(ValueError, match=f"Non-finite {what}.*env index 1 at step 37"):
        model.learn(128)
    assert th.equal(get_flat_params(list(model.policy.parameters())), before)


def test_non_finite_dict_observation_is_named_by_key():
    env = CorruptAt(SimpleMultiObsEnv(random_start=True), 5, "observation")
    model = TRPO("MultiInputPolicy", env, n_steps=16, batch_size=8, policy_kwargs=TINY, seed=0)
    with pytest.raises(ValueError, match=r"Non-finite observation\['(img|vec)'\].*env index 0 at step 5"):
        model.learn(16)


class StopAfter(BaseCallback):
    def __init__(self, n_calls: int, interrupt: bool) -> None:
        super().__init__()
        self.limit, self.interrupt = n_calls, interrupt

    def _on_step(self) -> bool:
        if self.n_calls >= self.limit:
            if self.interrupt:
                raise KeyboardInterrupt
            return False
        return True


@pytest.mark.parametrize("interrupt", [False, True])
def test_stopped_or_interrupted_learn_leaves_a_model_that_saves_loads_and_trains(tmp_path, interrupt):
    model = TRPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(64)  # one full update first
    if interrupt:
        with pytest.raises(KeyboardInterrupt):
            model.learn(1000, callback=StopAfter(20, interrupt=True), reset_num_timesteps=False)
    else:
        model.learn(1000, callback=StopAfter(20, interrupt=False), reset_num_timesteps=False)
    assert all(th.isfinite(param).all() for param in model.policy.parameters())
    n_updates, num_timesteps = model._n_updates, model.num_timesteps
    model.save(tmp_path / "stopped")
    loaded = TRPO.load(tmp_path / "stopped", env=make_vec_env("CartPole-v1", n_envs=1))
    assert (loaded._n_updates, loaded.num_timesteps) == (n_updates, num_timesteps)
    loaded.learn(128, reset_num_timesteps=False)
    assert loaded._n_updates > n_updates


def test_interrupt_inside_the_line_search_restores_the_actor(monkeypatch):
    """A KeyboardInterrupt while the line search has moved the parameters leaves theta_old in place."""
    import sb3_trpo.trpo.trpo

    real_search = sb3_trpo.trpo.trpo.backtracking_line_search

    def interrupted_search(evaluate, *args, **kwargs):
        evaluate(1.0)  # parameters now at the full step
        raise KeyboardInterrupt

    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(64)
    model.rollout_buffer.reset()
    monkeypatch.setattr(sb3_trpo.trpo.trpo, "backtracking_line_search", interrupted_search)
    before = get_flat_params(model.actor_params)
    with pytest.raises(KeyboardInterrupt):
        model.learn(64, reset_num_timesteps=False)
    assert th.equal(get_flat_params(model.actor_params), before)
    monkeypatch.setattr(sb3_trpo.trpo.trpo, "backtracking_line_search", real_search)
    model.learn(64, reset_num_timesteps=False)


@pytest.mark.parametrize("size_fraction", [0.0, 0.5, 0.9])
def test_truncated_save_file_gives_a_clear_error(tmp_path, size_fraction):
    model = TRPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    path = tmp_path / "model.zip"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * size_fraction)])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        TRPO.load(path)


def test_corrupted_save_file_gives_a_clear_error(tmp_path):
    model = TRPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    path = tmp_path / "model.zip"
    model.save(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupted"):
        TRPO.load(path)


# ---------------------------------------------------------------------------------------------------------------------
# Numerical faults inside the update: detected, counted, and no NaN reaches the weights
# ---------------------------------------------------------------------------------------------------------------------


def _one_update(model: TRPO) -> dict:
    model.learn(model.n_steps, reset_num_timesteps=False, log_interval=10**9)
    return dict(model.logger.name_to_value)


def _finite(model: TRPO) -> bool:
    return all(bool(th.isfinite(param).all()) for param in model.policy.parameters())


@pytest.mark.parametrize("log_std", [-20.0, 20.0])
@pytest.mark.parametrize("fisher_product", ["gauss_newton", "double_backward"])
def test_extreme_log_std_never_produces_non_finite_weights(log_std, fisher_product):
    model = TRPO(
        "MlpPolicy", "Pendulum-v1", n_steps=128, batch_size=64, policy_kwargs=TINY, seed=0, fisher_product=fisher_product
    )
    with th.no_grad():
        model.policy.log_std.fill_(log_std)
    for _ in range(3):
        actor_before = get_flat_params(model.actor_params)
        logged = _one_update(model)
        assert _finite(model)
        if logged["train/is_line_search_success"]:
            assert logged["train/kl_divergence_loss"] <= model.target_kl
        else:
            assert th.equal(get_flat_params(model.actor_params), actor_before)


def test_ratio_overflow_in_long_steps_is_rejected():
    """A huge trust region makes the first candidates overflow exp(log_pi - log_pi_old): they are rejected."""
    model = TRPO(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=128,
        batch_size=64,
        policy_kwargs=TINY,
        seed=0,
        target_kl=1e4,
        line_search_max_iter=40,
    )
    for _ in range(3):
        logged = _one_update(model)
        assert _finite(model)
        assert logged["train/kl_divergence_loss"] <= model.target_kl


def test_line_search_with_only_nan_candidates_reverts_and_counts(monkeypatch):
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(64)
    nan = th.tensor(float("nan"))
    monkeypatch.setattr(model, "_policy_terms", lambda *args: (nan, nan))
    actor_before = get_flat_params(model.actor_params)
    logged = _one_update(model)
    assert th.equal(get_flat_params(model.actor_params), actor_before)
    assert logged["train/is_line_search_success"] == 0.0
    assert logged["train/line_search_backtracks"] == model.line_search_max_iter
    assert _finite(model)


def test_non_positive_curvature_skips_the_step(monkeypatch):
    """A Fisher product that is not positive along the CG direction (x^T F x <= 0): no step, counted."""
    import sb3_trpo.trpo.trpo

    model = TRPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    model.learn(64)
    real = sb3_trpo.trpo.trpo.TRPO._fisher_vector_product

    def negated(self, *args):
        fvp = real(self, *args)
        return lambda vector: -fvp(vector)

    monkeypatch.setattr(sb3_trpo.trpo.trpo.TRPO, "_fisher_vector_product", negated)
    actor_before = get_flat_params(model.actor_params)
    logged = _one_update(model)
    assert th.equal(get_flat_params(model.actor_params), actor_before)
    assert logged["train/step_skipped"] == 1.0 and logged["train/max_step_length"] == 0.0
    assert _finite(model)


def test_resumed_training_continues_logs_and_schedules(tmp_path):
    def schedule(progress_remaining: float) -> float:
        return 1e-3 * progress_remaining + 1e-5

    model = TRPO(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=64,
        batch_size=32,
        policy_kwargs=TINY,
        seed=0,
        learning_rate=schedule,
        tensorboard_log=str(tmp_path / "tb"),
    )
    model.learn(128, tb_log_name="run")
    model.save(tmp_path / "model")
    loaded = TRPO.load(tmp_path / "model", env=make_vec_env("CartPole-v1", n_envs=1), learning_rate=schedule)
    loaded.learn(128, reset_num_timesteps=False, tb_log_name="run")
    # The counters continue, the learning-rate schedule is evaluated on the continued progress, and the
    # tensorboard events go on in the same run folder
    assert loaded.num_timesteps == 256 and loaded._n_updates == 4
    assert loaded.policy.optimizer.param_groups[0]["lr"] == pytest.approx(schedule(loaded._current_progress_remaining))
    assert sorted(path.name for path in (tmp_path / "tb").iterdir()) == ["run_1"]
