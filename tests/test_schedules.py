"""
Schedules of the family's hyperparameters (``target_kl``, ``learning_rate``) at every progress remaining.

SB3's progress remaining goes below 0 on the last rollout of a ``learn()`` whose budget is not a multiple of
``n_steps * n_envs``; schedules written as SB3 users and the RL Zoo write them (``lambda p: x * p``, rl_zoo3's
``linear_schedule``, the ``"lin_<x>"`` string) are then negative. The rule: a value <= 0 is no step at that update
(logged as ``train/step_skipped``), the critic still fits; a value that is not finite raises naming the argument,
before the update touches any weight.
"""

import math
from typing import Any

import numpy as np
import pytest
import rl_zoo3.import_envs  # noqa: F401 (registers CartPoleNoVel-v1)
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st
from rl_zoo3.utils import linear_schedule
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import LinearSchedule

import sb3_trpo.envs  # noqa: F401 (registers InvalidActionsDiscrete-v0)
from sb3_trpo import NPG, TRPO, MaskableRecurrentTRPO, MaskableTRPO, RecurrentTRPO
from sb3_trpo.common.on_policy_ng import scheduled_value, trust_region_radius_schedule
from conftest import LogRecorder

#: Each algorithm, its policy and a small task
ALGORITHMS: dict[str, tuple[type, str, str]] = {
    "TRPO": (TRPO, "MlpPolicy", "CartPole-v1"),
    "NPG": (NPG, "MlpPolicy", "Pendulum-v1"),
    "MaskableTRPO": (MaskableTRPO, "MlpPolicy", "InvalidActionsDiscrete-v0"),
    "RecurrentTRPO": (RecurrentTRPO, "MlpLstmPolicy", "CartPoleNoVel-v1"),
    "MaskableRecurrentTRPO": (MaskableRecurrentTRPO, "MlpLstmPolicy", "InvalidActionsDiscrete-v0"),
}
N_STEPS = 32


def schedule_styles(start: float) -> dict[str, Any]:
    """The same linear schedule from ``start`` to 0, as SB3 users, SB3's utils, the RL Zoo and its yml files write it."""
    return {
        "lambda": lambda progress: start * progress,
        "LinearSchedule": LinearSchedule(start, 0.0, 1.0),
        "rl_zoo3.linear_schedule": linear_schedule(start),
        "lin_string": f"lin_{start!r}",
    }


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(1e-4, 1.0),
    progress=st.floats(-0.5, 1.0),
    style=st.sampled_from(["lambda", "LinearSchedule", "rl_zoo3.linear_schedule", "lin_string"]),
)
def test_a_schedule_past_the_budget_is_zero_never_negative(start: float, progress: float, style: str) -> None:
    schedule = trust_region_radius_schedule(schedule_styles(start)[style])
    value = scheduled_value("target_kl", schedule, progress)
    assert value >= 0.0 and math.isfinite(value)
    if progress <= 0:
        assert value == 0.0
    else:
        assert value == pytest.approx(start * progress, rel=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "abc", None])
def test_a_schedule_that_is_not_a_finite_number_names_its_argument(bad: Any) -> None:
    with pytest.raises(ValueError, match="`learning_rate` must give a finite number at every progress remaining"):
        scheduled_value("learning_rate", lambda progress: bad, -0.25)


def _model(name: str, **kwargs: Any) -> Any:
    algorithm, policy, env_id = ALGORITHMS[name]
    net_arch = dict(net_arch=[8], lstm_hidden_size=4) if "Recurrent" in name else dict(net_arch=[8])
    return algorithm(policy, env_id, n_steps=N_STEPS, batch_size=N_STEPS, policy_kwargs=net_arch, seed=0, **kwargs)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@settings(max_examples=3, deadline=None)
@given(
    extra_steps=st.integers(1, N_STEPS - 1),
    start=st.floats(1e-3, 0.1),
    style=st.sampled_from(["lambda", "LinearSchedule", "rl_zoo3.linear_schedule", "lin_string"]),
    lr_style=st.sampled_from(["lambda", "LinearSchedule", "rl_zoo3.linear_schedule"]),
)
def test_every_algorithm_ends_learn_and_saves_when_the_budget_is_not_a_multiple_of_the_rollout(
    name: str, extra_steps: int, start: float, style: str, lr_style: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    model = _model(name, target_kl=schedule_styles(start)[style], learning_rate=schedule_styles(1e-3)[lr_style])
    recorder = LogRecorder(model)
    # Two full rollouts and a third past the budget: its progress remaining is below 0
    model.learn(2 * N_STEPS + extra_steps)
    assert model.num_timesteps == 3 * N_STEPS and model._current_progress_remaining < 0
    # The last update took no policy step and said so; the updates before had a radius > 0
    radii = recorder.values["train/target_kl_effective"]
    assert radii[-1] == 0.0 and all(radius > 0 for radius in radii[:-1])
    assert recorder.values["train/step_skipped"][-1] == 1.0
    assert recorder.values["train/kl_divergence_loss"][-1] == 0.0
    assert recorder.values["train/learning_rate"][-1] == 0.0
    # The critic still ran its regression (a finite loss) with a rate of 0
    assert math.isfinite(recorder.values["train/value_loss"][-1])
    path = tmp_path_factory.mktemp("schedules") / "model.zip"
    model.save(path)
    loaded = type(model).load(path)
    assert all(th.equal(a, b) for a, b in zip(model.policy.parameters(), loaded.policy.parameters(), strict=True))


def test_the_issue_reproduction_ends_and_saves(tmp_path: Any) -> None:
    # TRPO("MlpPolicy", "Pendulum-v1", n_steps=256, target_kl=lambda p: 0.01 * p, seed=0).learn(300) raised
    # "ValueError: math domain error" at its last update
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=256, target_kl=lambda p: 0.01 * p, seed=0).learn(300)
    model.save(tmp_path / "model.zip")
    assert model.num_timesteps == 512


class SnapshotBeforeUpdate(BaseCallback):
    """Keeps the policy's parameters and the critic's Adam state as they were when the last rollout ended."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.params = [param.detach().clone() for param in self.model.policy.parameters()]
        optimizer_state = self.model.policy.optimizer.state.values()
        self.adam = [value.clone() for state in optimizer_state for value in state.values()]


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("argument", ["target_kl", "learning_rate"])
def test_a_non_finite_schedule_value_raises_before_the_update_touches_the_weights(name: str, argument: str) -> None:
    # Finite while the progress remaining is >= 0, NaN past the budget: the second update raises
    def schedule(progress: float) -> float:
        return 0.01 if progress >= 0 else float("nan")

    model, snapshot = _model(name, **{argument: schedule}), SnapshotBeforeUpdate()
    with pytest.raises(ValueError, match=f"`{argument}` must give a finite number"):
        model.learn(N_STEPS + 1, callback=snapshot)
    assert model._n_updates == 1 and model._current_progress_remaining < 0
    assert all(th.equal(a, b) for a, b in zip(snapshot.params, model.policy.parameters(), strict=True))
    optimizer_state = model.policy.optimizer.state.values()
    adam = [value for state in optimizer_state for value in state.values()]
    assert len(adam) == len(snapshot.adam) > 0 and all(th.equal(a, b) for a, b in zip(snapshot.adam, adam, strict=True))


def test_a_zero_radius_leaves_the_actor_and_fits_the_critic() -> None:
    model, snapshot = _model("TRPO", target_kl=lambda progress: 0.05 if progress > 0.5 else 0.0), SnapshotBeforeUpdate()
    model.learn(N_STEPS, callback=snapshot)  # one update, at progress 0: radius 0
    actor_ids = {id(param) for param in model.actor_params}
    pairs = list(zip(snapshot.params, model.policy.parameters(), strict=True))
    assert all(th.equal(old, new) for old, new in pairs if id(new) in actor_ids)
    assert not all(th.equal(old, new) for old, new in pairs if id(new) not in actor_ids)
    assert np.isfinite(model.logger.name_to_value["train/value_loss"])
