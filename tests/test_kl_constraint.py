"""
``kl_constraint="sb3_contrib"``: the quantity ``target_kl`` bounds is sb3-contrib's TRPO's, for every action space.

sb3-contrib's TRPO checks ``kl_divergence(distribution, old_distribution).mean()`` in its line search and sizes the
step with the Hessian of that mean plus ``cg_damping``. These tests evaluate sb3-contrib's formula with the
``kl_divergence`` its module calls, on the same distributions, and its Hessian by double backward; sb3-contrib's class
is never built.
"""

from typing import Any

import numpy as np
import pytest
import torch as th
from sb3_contrib.trpo.trpo import kl_divergence as sb3_contrib_kl_divergence
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete

from conftest import LogRecorder
from sb3_trpo import NPG, TRPO
from sb3_trpo.common.natural_gradient import (
    constrained_kl,
    detached_distribution,
    flat_grad,
    get_flat_params,
    kl_constraint_dimensions,
    kl_old_new,
    set_flat_params,
)

N_STEPS = 64
#: Each action space (gSDE too), with d, the number of action dimensions sb3-contrib averages over
SPACES: dict[str, tuple[Any, dict[str, Any], int]] = {
    "Box": (lambda: IdentityEnvBox(ep_length=8), {}, 1),
    "Box-gSDE": (lambda: IdentityEnvBox(ep_length=8), {"use_sde": True}, 1),
    "Box-6": ("HalfCheetah-v5", {}, 6),
    "Box-6-gSDE": ("HalfCheetah-v5", {"use_sde": True}, 6),
    "Discrete": (lambda: IdentityEnv(5, ep_length=8), {}, 1),
    "MultiDiscrete": (lambda: IdentityEnvMultiDiscrete(3, ep_length=8), {}, 1),
    "MultiBinary": (lambda: IdentityEnvMultiBinary(4, ep_length=8), {}, 4),
}


def _model(space: str, fisher_product: str = "gauss_newton", **kwargs: Any) -> TRPO:
    env, options, _ = SPACES[space]
    model = TRPO(
        "MlpPolicy",
        env if isinstance(env, str) else env(),
        n_steps=N_STEPS,
        batch_size=N_STEPS,
        policy_kwargs=dict(net_arch=[8]),
        kl_constraint="sb3_contrib",
        fisher_product=fisher_product,
        seed=0,
        **{**options, **kwargs},
    )
    # One rollout, no update
    _, callback = model._setup_learn(N_STEPS, callback=None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, N_STEPS)  # type: ignore[arg-type]
    return model


def _perturb(model: TRPO, scale: float = 0.005) -> None:
    generator = th.Generator().manual_seed(1)
    flat = get_flat_params(model.actor_params)
    set_flat_params(model.actor_params, flat + scale * th.randn(flat.shape, generator=generator))


@pytest.mark.parametrize("space", sorted(SPACES))
def test_the_bounded_quantity_is_sb3_contribs_formula(space: str) -> None:
    model = _model(space)
    assert kl_constraint_dimensions(model.action_space, "sb3_contrib") == SPACES[space][2]
    batch = model._policy_batch()
    objective = model._policy_objective(batch)
    old = objective.old_distribution
    _perturb(model)
    with th.no_grad():
        new = model._distribution_on(batch)
        expected = sb3_contrib_kl_divergence(new, old).mean()
        ours = constrained_kl(old, new, "sb3_contrib").mean()
        _, measured = model._policy_terms(batch, objective.old_log_prob, old)
        joint = kl_old_new(old, new).mean()
    assert float(expected) > 0
    assert th.allclose(ours, expected, rtol=1e-5, atol=0) and th.allclose(measured, expected, rtol=1e-5, atol=0)
    # 1/d of the joint KL(old || new) to second order
    assert float(joint / expected) == pytest.approx(SPACES[space][2], rel=0.25)
    # Far from theta_old, sb3-contrib's direction KL(new || old), not joint / d
    _perturb(model, scale=0.5)
    with th.no_grad():
        new = model._distribution_on(batch)
        expected = sb3_contrib_kl_divergence(new, old).mean()
        ours = constrained_kl(old, new, "sb3_contrib").mean()
        joint_per_dimension = kl_old_new(old, new).mean() / SPACES[space][2]
    assert th.allclose(ours, expected, rtol=1e-5, atol=0)
    assert not th.allclose(joint_per_dimension, expected, rtol=1e-2)


@pytest.mark.parametrize("fisher_product", ["gauss_newton", "double_backward"])
@pytest.mark.parametrize("space", sorted(SPACES))
def test_the_fisher_product_is_the_hessian_of_sb3_contribs_kl(space: str, fisher_product: str) -> None:
    model = _model(space, fisher_product=fisher_product, cg_damping=0.05)
    batch = model._policy_batch()
    objective = model._policy_objective(batch)
    fvp = model._fisher_vector_product(batch, objective.distribution, objective.old_distribution)
    # sb3-contrib's Hessian-vector product: grad((grad mean KL(new || old)) . v) + cg_damping * v, at theta_old
    distribution = model._distribution_on(batch)
    kl = sb3_contrib_kl_divergence(distribution, detached_distribution(distribution)).mean()
    kl_grad = flat_grad(kl, model.actor_params, create_graph=True)
    generator = th.Generator().manual_seed(2)
    for _ in range(3):
        vector = th.randn(kl_grad.shape, generator=generator)
        expected = flat_grad(th.dot(kl_grad, vector), model.actor_params, retain_graph=True) + 0.05 * vector
        assert th.allclose(fvp(vector), expected, rtol=1e-4, atol=1e-6)


class ContribKLAfterEachUpdate(BaseCallback):
    """sb3-contrib's ``kl_divergence(new, old).mean()`` over each rollout, between the policy before and after its update."""

    def __init__(self) -> None:
        super().__init__()
        self.kls: list[float] = []
        self._before: Any = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        observations = buffer.observations.reshape((-1, *buffer.obs_shape))
        state = {key: value.clone() for key, value in self.model.policy.state_dict().items()}
        self._before = (state, th.as_tensor(observations))

    def _on_rollout_start(self) -> None:
        if self._before is not None:
            self._measure()

    def _on_training_end(self) -> None:
        self._measure()

    def _measure(self) -> None:
        old_state, observations = self._before
        policy = self.model.policy
        new_state = {key: value.clone() for key, value in policy.state_dict().items()}
        with th.no_grad():
            policy.load_state_dict(old_state)
            old = detached_distribution(policy.get_distribution(observations))
            policy.load_state_dict(new_state)
            new = policy.get_distribution(observations)
            self.kls.append(float(sb3_contrib_kl_divergence(new, old).mean()))
        self._before = None


@pytest.mark.parametrize("algorithm", [TRPO, NPG])
@pytest.mark.parametrize("space", ["Box-6", "Box-6-gSDE", "MultiBinary", "MultiDiscrete"])
def test_after_every_accepted_step_sb3_contribs_kl_is_within_target_kl(algorithm: type, space: str) -> None:
    env, options, _ = SPACES[space]
    target_kl = 0.02
    model = algorithm(
        "MlpPolicy",
        env if isinstance(env, str) else env(),
        n_steps=N_STEPS * 2,
        batch_size=N_STEPS,
        policy_kwargs=dict(net_arch=[16]),
        kl_constraint="sb3_contrib",
        target_kl=target_kl,
        seed=0,
        **options,
    )
    recorder, check = LogRecorder(model), ContribKLAfterEachUpdate()
    model.learn(N_STEPS * 2 * 5, callback=check)
    measured, logged = np.array(check.kls), np.array(recorder.values["train/kl_divergence_loss"])
    assert len(measured) == len(logged) == 5
    # The logged KL is sb3-contrib's quantity, measured independently here (the critic never moves the actor)
    np.testing.assert_allclose(measured, logged, rtol=1e-4, atol=1e-9)
    if algorithm is TRPO:
        accepted = np.array(recorder.values["train/is_line_search_success"]) == 1.0
        assert accepted.any() and (measured[accepted] <= target_kl).all()


def test_the_joint_constraint_is_the_default_and_a_bad_value_names_the_argument() -> None:
    assert TRPO("MlpPolicy", "CartPole-v1").kl_constraint == "joint"
    with pytest.raises(ValueError, match=r"`kl_constraint` must be one of \('joint', 'sb3_contrib'\), got 'mean'"):
        TRPO("MlpPolicy", "CartPole-v1", kl_constraint="mean")


def test_kl_constraint_is_saved_with_the_model(tmp_path: Any) -> None:
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, kl_constraint="sb3_contrib").learn(64)
    model.save(tmp_path / "model.zip")
    assert TRPO.load(tmp_path / "model.zip").kl_constraint == "sb3_contrib"


def _trained(command: list[str], folder: Any) -> tuple[dict[str, Any], str]:
    import subprocess
    import sys

    import yaml

    completed = subprocess.run(
        [sys.executable, "-m", *command, "--env", "Pendulum-v1", "-n", "2048", "-f", str(folder), "--seed", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    run = folder / "trpo" / "Pendulum-v1_1"
    config = dict(yaml.load((run / "Pendulum-v1" / "config.yml").read_text(), Loader=yaml.UnsafeLoader))
    return config, TRPO.load(run / "Pendulum-v1.zip").kl_constraint


def test_the_zoos_own_trpo_entries_get_sb3_contribs_trust_region_as_with_params(tmp_path: Any) -> None:
    import argparse

    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_trpo import zoo
    from sb3_trpo.zoo.manager import TRPOExperimentManager

    # Our manager (python -m sb3_trpo train -conf rl_zoo3) on the RL Zoo's own trpo.yml ...
    ours = TRPOExperimentManager(argparse.Namespace(), "trpo", "Pendulum-v1", str(tmp_path), config="rl_zoo3")
    ours.config = str(zoo.rl_zoo_config_path("trpo"))
    # ... and the Zoo's own manager, which reads that file when not given -conf, told so with -params
    params = {"kl_constraint": "sb3_contrib"}
    theirs = ExperimentManager(argparse.Namespace(), "trpo", "Pendulum-v1", str(tmp_path), hyperparams=params)
    (hyperparams, saved), (zoo_hyperparams, zoo_saved) = ours.read_hyperparameters(), theirs.read_hyperparameters()
    assert hyperparams == zoo_hyperparams and dict(saved) == dict(zoo_saved)
    assert hyperparams["kl_constraint"] == "sb3_contrib"
    entry = zoo.load_config(zoo.rl_zoo_config_path("trpo"))["Pendulum-v1"]
    assert {key: value for key, value in hyperparams.items() if key != "kl_constraint"} == entry
    # our own file keeps the joint KL it was tuned with; an entry or -params that names a constraint keeps it
    ours.config = str(zoo.default_config_path("trpo"))
    assert "kl_constraint" not in ours.read_hyperparameters()[0]
    named = {"kl_constraint": "joint"}
    assert zoo.zoo_trust_region(named, "trpo", zoo.rl_zoo_config_path("trpo")) == {"kl_constraint": "joint"}
    assert zoo.check_run("Pendulum-v1", str(zoo.rl_zoo_config_path("trpo")))["kl_constraint"] == "sb3_contrib"


@pytest.mark.expensive
def test_the_cli_and_the_zoo_reach_sb3_contribs_trust_region_with_the_zoos_own_entries(tmp_path: Any) -> None:
    from sb3_trpo import zoo

    # python -m sb3_trpo train -conf rl_zoo3: the RL Zoo's own trpo.yml, tuned for sb3-contrib's TRPO
    ours, ours_constraint = _trained(["sb3_trpo", "train", "-conf", "rl_zoo3", "--final-eval-episodes", "0"], tmp_path / "a")
    # the Zoo's own script, which reads its trpo.yml when not given -conf, told so with -params
    zoos, zoos_constraint = _trained(
        ["rl_zoo3.train", "--algo", "trpo", "--gym-packages", "sb3_trpo.zoo.plugin", "-params", "kl_constraint:'sb3_contrib'"],
        tmp_path / "b",
    )
    assert ours_constraint == zoos_constraint == "sb3_contrib"
    assert ours == zoos and ours["kl_constraint"] == "sb3_contrib"
    entry = zoo.load_config(zoo.rl_zoo_config_path("trpo"))["Pendulum-v1"]
    assert {key: value for key, value in ours.items() if key != "kl_constraint"} == entry
