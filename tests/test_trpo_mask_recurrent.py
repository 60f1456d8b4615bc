"""MaskableRecurrentTRPO: TRPO with action masks and an LSTM policy (RecurrentTRPO with MaskableTRPO's masking).

Parametrized over the three maskable action spaces as ``test_trpo_mask.py`` is: masked actions are never taken, every
accepted step is inside the masked trust region over the real samples, the masked distributions over padded sequences
equal a per-sequence computation (and so do the Fisher products, against the Hessian of the masked KL), and the
contracts of MaskablePPO (masks in predict, the maskable evaluation helpers (``sb3_trpo.common.evaluation``'s, which
keep the LSTM states), ``ActionMasker``, ``use_masking=False``)
and RecurrentPPO (LSTM states in predict, dict observations, save/load) hold together. (``ActionMasker``,
``use_masking=False`` and image observations: ``test_trpo_mask.py``, parametrized over both maskable algorithms.)
"""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib.common.maskable.utils import get_action_masks
from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from conftest import LogRecorder, accepted_kls, assert_same_state
from sb3_trpo.common.evaluation import MaskableEvalCallback, evaluate_policy
from sb3_trpo.common.natural_gradient import (
    detached_distribution,
    distribution_samples,
    flat_grad,
    kl_old_new,
    torch_distributions,
)
from sb3_trpo.trpo_mask_recurrent import MaskableRecurrentTRPO, MultiInputLstmPolicy
from sb3_trpo.trpo_mask_recurrent.buffers import MaskableRecurrentDictRolloutBuffer, MaskableRecurrentRolloutBuffer
from sb3_trpo.common.maskable.policies import MaskableRecurrentActorCriticPolicy
from sb3_trpo.trpo_recurrent import MlpLstmPolicy as RecurrentMlpLstmPolicy
from test_trpo_mask import ENVS, RefuseInvalidActions, _DictObservation
from test_trpo_recurrent import _unpadded_sequences

TINY = dict(lstm_hidden_size=8, net_arch=[8])


def _model(kind: str, n_envs: int = 2, ep_length: int = 100, **kwargs: Any) -> MaskableRecurrentTRPO:
    def make() -> gym.Env:
        env = ENVS[kind]()
        env.unwrapped.ep_length = ep_length  # type: ignore[attr-defined]
        return RefuseInvalidActions(env)

    settings: dict[str, Any] = dict(n_steps=32, batch_size=32, policy_kwargs=TINY, seed=0)
    return MaskableRecurrentTRPO("MlpLstmPolicy", make_vec_env(make, n_envs=n_envs, seed=0), **{**settings, **kwargs})


def _collect(model: MaskableRecurrentTRPO) -> None:
    _, callback = model._setup_learn(model.n_steps * model.n_envs)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)


def _same_cut_batch(model: MaskableRecurrentTRPO) -> Any:
    # The whole rollout as train() will see it: the sampler's random cut drawn, then NumPy's generator put back
    state = np.random.get_state()
    batch = model._policy_batch()
    np.random.set_state(state)
    return batch


# ---------------------------------------------------------------------------------------------------------------------
# The masked distributions over padded sequences
# ---------------------------------------------------------------------------------------------------------------------


def _unpadded_masked_distribution(model: MaskableRecurrentTRPO, cut: int) -> Any:
    # pi_theta of every real sample (buffer order, env-major), each sequence run alone through the actor's LSTM from
    # its stored state, under the mask the step was collected with
    policy, buffer = model.policy, model.rollout_buffer
    observations = th.as_tensor(buffer.observations)
    latents = []
    for start, end in _unpadded_sequences(model, cut):  # type: ignore[arg-type]
        keep = 1.0 - float(buffer.episode_starts.reshape(-1)[start])
        stored = (buffer.hidden_states_pi, buffer.cell_states_pi)
        state = tuple(keep * th.as_tensor(states[start]).unsqueeze(1) for states in stored)
        features = policy.extract_features(observations[start:end], policy.pi_features_extractor)
        output, _ = policy.lstm_actor(features.unsqueeze(1), state)
        latents.append(output.squeeze(1))
    latent = policy.mlp_extractor.forward_actor(th.cat(latents))
    with policy._masked(th.as_tensor(buffer.action_masks).bool()):
        # (a wrapper of its own: the policy's is overwritten by its next forward pass)
        return distribution_samples(policy._get_action_dist_from_latent(latent), slice(None))


def _probabilities(distribution: Any) -> th.Tensor:
    return th.cat([dist.probs for dist in torch_distributions(distribution)], dim=1)


@pytest.mark.parametrize("kind", sorted(ENVS))
def test_masked_distributions_and_fisher_products_over_padded_sequences_equal_the_unpadded_computation(kind: str) -> None:
    model = _model(kind, ep_length=10, n_steps=24, batch_size=24, cg_damping=0.0)
    _collect(model)
    np.random.seed(5)
    cut = np.random.randint(model.n_envs * model.n_steps)
    np.random.seed(5)
    batch = model._policy_batch()
    assert batch.observations.shape[0] > batch.actions.shape[0], "the batch should be padded"
    real = batch.mask > 0.5
    assert batch.action_masks[~real].all(), "padding steps get all-valid masks"

    # The batch holds the real samples from the cut on (the sampler's rotation of the env-major order)
    order = np.roll(np.arange(model.n_envs * model.n_steps), -cut)
    reference = _unpadded_masked_distribution(model, cut)
    distribution = model._distribution_on(batch)
    masks = th.as_tensor(model.rollout_buffer.action_masks).bool()[order]
    probabilities = _probabilities(distribution)
    assert th.equal(probabilities[~masks], th.zeros_like(probabilities[~masks])), "masked actions have probability 0"
    assert th.allclose(probabilities, _probabilities(reference)[order], atol=1e-6)

    # Fisher products: the Hessian of the mean masked KL over the real samples, by double backward on the reference
    old = detached_distribution(reference)
    kl = kl_old_new(old, _unpadded_masked_distribution(model, cut)).mean()
    kl_grad = flat_grad(kl, model.actor_params, create_graph=True)
    objective = model._policy_objective(batch)
    generator = th.Generator().manual_seed(0)
    vectors = [th.randn(kl_grad.numel(), generator=generator) for _ in range(3)]
    for fisher_product in ("gauss_newton", "double_backward"):
        model.fisher_product = fisher_product
        fvp = model._fisher_vector_product(batch, objective.distribution, objective.old_distribution)
        for vector in vectors:
            expected = flat_grad(th.dot(kl_grad, vector), model.actor_params, retain_graph=True)
            assert th.allclose(fvp(vector), expected, rtol=1e-3, atol=1e-6), fisher_product
            assert th.isfinite(fvp(vector)).all()


class CheckMaskedTrustRegion(BaseCallback):
    """After every update, the masked KL over the real samples between the rollout's pi_old and the new policy."""

    def __init__(self) -> None:
        super().__init__()
        self.n_checked = 0

    def _on_rollout_start(self) -> None:
        if not hasattr(self, "old"):
            return
        with th.no_grad():
            kl = kl_old_new(self.old, self.model._distribution_on(self.batch)).mean()
        assert float(kl) <= self.model.target_kl * (1 + 1e-5)
        self.n_checked += 1

    def _on_rollout_end(self) -> None:
        self.batch = _same_cut_batch(self.model)  # the same sequences as train()'s
        with th.no_grad():
            self.old = detached_distribution(self.model._distribution_on(self.batch))

    def _on_step(self) -> bool:
        return True


@pytest.mark.parametrize("kind", sorted(ENVS))
def test_every_accepted_step_is_inside_the_masked_trust_region_and_masked_actions_are_never_taken(kind: str) -> None:
    model = _model(kind, ep_length=20, target_kl=0.02)
    recorder = LogRecorder(model)
    check = CheckMaskedTrustRegion()
    model.learn(64 * 5, callback=check)  # RefuseInvalidActions fails on any masked action
    assert check.n_checked == 4
    accepted = accepted_kls(recorder)
    assert accepted and all(kl <= 0.02 for kl in accepted)
    assert all(np.isfinite(values).all() for values in recorder.values.values() if isinstance(values[0], float))


@pytest.mark.expensive
def test_learns_the_masked_identity_task() -> None:
    env = RefuseInvalidActions(ENVS["discrete"]())
    model = MaskableRecurrentTRPO(
        "MlpLstmPolicy", env, n_steps=256, batch_size=64, seed=0, target_kl=0.1, policy_kwargs=dict(lstm_hidden_size=16)
    )
    before, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=5, warn=False)
    model.learn(3584)
    after, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=5, warn=False)
    # 100 steps per episode, reward 1 per correct step; random play among the 3 valid actions scores about 33
    assert after >= 85 and after > before + 20, (before, after)


def test_same_seed_same_parameters() -> None:
    first = _model("multidiscrete").learn(128)
    second = _model("multidiscrete").learn(128)
    for a, b in zip(first.policy.state_dict().values(), second.policy.state_dict().values(), strict=True):
        assert th.equal(a, b)


# ---------------------------------------------------------------------------------------------------------------------
# MaskablePPO's and RecurrentPPO's contracts together
# ---------------------------------------------------------------------------------------------------------------------


def test_predict_with_states_and_masks_and_the_maskable_evaluation_helpers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _model("discrete")
    eval_callback = MaskableEvalCallback(
        RefuseInvalidActions(ENVS["discrete"]()), eval_freq=32, n_eval_episodes=2, log_path=str(tmp_path)
    )
    model.learn(128, callback=eval_callback)
    assert eval_callback.evaluations_results and len(eval_callback.evaluations_results) == 2
    env = model.get_env()
    obs, state, starts = env.reset(), None, np.ones(env.num_envs, dtype=bool)
    for _ in range(30):
        masks = get_action_masks(env)
        action, state = model.predict(obs, state=state, episode_start=starts, action_masks=masks, deterministic=True)
        assert state is not None and state[0].shape == (1, env.num_envs, 8)
        assert all(masks[index][int(action[index])] for index in range(env.num_envs))
        obs, _, starts, _ = env.step(action)
    # A single allowed action is always the one chosen, deterministic or not, whatever the memory holds
    only = np.zeros((env.num_envs, 6), dtype=bool)
    only[:, 4] = True
    for deterministic in (True, False):
        actions, _ = model.predict(obs, state=state, episode_start=starts, action_masks=only, deterministic=deterministic)
        assert (actions == 4).all()


def test_dict_observations() -> None:
    env = make_vec_env(lambda: _DictObservation(RefuseInvalidActions(ENVS["discrete"]())), n_envs=2)
    model = MaskableRecurrentTRPO(MultiInputLstmPolicy, env, n_steps=32, batch_size=32, policy_kwargs=TINY, seed=0)
    assert isinstance(model.rollout_buffer, MaskableRecurrentDictRolloutBuffer)
    model.learn(128)
    assert model.num_timesteps == 128


@pytest.mark.parametrize("policy_kwargs", [dict(shared_lstm=True, enable_critic_lstm=False), dict(enable_critic_lstm=False)])
def test_lstm_options(policy_kwargs: dict) -> None:
    model = _model("multibinary", policy_kwargs={**TINY, **policy_kwargs})
    model.learn(128)
    assert model.num_timesteps == 128


def test_save_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _model("multibinary", ent_coef=0.01, adaptive_kl=True, cg_warm_start=True, target_kl=0.03)
    model.learn(128)
    model.save(tmp_path / "model.zip")
    loaded = MaskableRecurrentTRPO.load(tmp_path / "model.zip", env=model.get_env())
    assert isinstance(loaded.policy, MaskableRecurrentActorCriticPolicy)
    assert isinstance(loaded.rollout_buffer, MaskableRecurrentRolloutBuffer)
    assert_same_state(
        model, loaded, ("ent_coef", "adaptive_kl", "cg_warm_start", "target_kl", "target_kl_effective", "line_search_max_iter")
    )
    env = model.get_env()
    obs, masks = env.reset(), get_action_masks(env)
    state = (np.ones((1, env.num_envs, 8)), -np.ones((1, env.num_envs, 8)))
    starts = np.zeros(env.num_envs, dtype=bool)
    expected = model.predict(obs, state=state, episode_start=starts, action_masks=masks, deterministic=True)
    got = loaded.predict(obs, state=state, episode_start=starts, action_masks=masks, deterministic=True)
    assert np.array_equal(expected[0], got[0])
    assert all(np.array_equal(a, b) for a, b in zip(expected[1], got[1], strict=True))
    loaded.learn(64, reset_num_timesteps=False)


def test_invalid_arguments_are_named() -> None:
    env = ENVS["discrete"]()
    with pytest.raises(ValueError, match="`policy`"):
        MaskableRecurrentTRPO(RecurrentMlpLstmPolicy, env)  # sb3-contrib's recurrent policy takes no masks
    with pytest.raises(ValueError, match="MlpPolicy unknown"):  # SB3's own check of the aliases
        MaskableRecurrentTRPO("MlpPolicy", env)
    with pytest.raises(ValueError, match="`rollout_buffer_class`"):
        MaskableRecurrentTRPO("MlpLstmPolicy", env, rollout_buffer_class=RecurrentRolloutBuffer)
    with pytest.raises(ValueError, match="gSDE"):  # SB3's own check: no gSDE for discrete actions
        MaskableRecurrentTRPO("MlpLstmPolicy", env, use_sde=True)
    with pytest.raises(ValueError, match="`target_kl`"):
        MaskableRecurrentTRPO("MlpLstmPolicy", env, target_kl=0.0)
    with pytest.raises(AssertionError, match="only supports"):
        MaskableRecurrentTRPO("MlpLstmPolicy", "Pendulum-v1")
