"""RecurrentTRPO: TRPO over padded sequences with sb3-contrib's recurrent policies and buffers.

The update is checked against an unpadded computation (each sequence run on its own through the LSTM), every accepted
step against the trust region over real samples, the rollout against RecurrentPPO's, and RecurrentPPO's contracts
(predict with states, evaluate_policy, the LSTM options, dict observations, save/load) the way sb3-contrib's
``test_lstm.py`` exercises them.
"""

import gymnasium as gym
import numpy as np
import pytest
import rl_zoo3.import_envs  # noqa: F401 (registers CartPoleNoVel-v1 and PendulumNoVel-v1)
import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.policies import ActorCriticPolicy

from conftest import LogRecorder, accepted_kls, assert_same_state
from sb3_trpo import TRPO, RecurrentTRPO
from sb3_trpo.common.natural_gradient import flat_grad, get_flat_params, normalize_advantages
from sb3_trpo.trpo_recurrent import MlpLstmPolicy, MultiInputLstmPolicy
from sb3_trpo.common.recurrent.algorithm import reset_states_at_sequence_starts

TINY = dict(lstm_hidden_size=8, net_arch=[8])


def _model(env_id: str = "CartPoleNoVel-v1", n_envs: int = 2, **kwargs) -> RecurrentTRPO:  # type: ignore[no-untyped-def]
    settings = dict(n_steps=32, batch_size=32, policy_kwargs=TINY, seed=0)
    return RecurrentTRPO("MlpLstmPolicy", make_vec_env(env_id, n_envs=n_envs, seed=0), **{**settings, **kwargs})


# ---------------------------------------------------------------------------------------------------------------------
# The update over padded sequences equals an unpadded, per-sequence computation
# ---------------------------------------------------------------------------------------------------------------------


def _unpadded_sequences(model: RecurrentTRPO, cut: int = 0) -> list[tuple[int, int]]:
    # (start, end) of each sequence in the buffer's env-major order: a new one at each episode start, each env, and
    # at the cut where sb3-contrib's sampler rotates the buffer (the part after it restarts from the stored states)
    buffer = model.rollout_buffer
    starts = buffer.episode_starts.reshape(model.n_envs, model.n_steps).copy()
    starts[:, 0] = 1.0
    starts = starts.reshape(-1)
    starts[cut] = 1.0
    flat = np.flatnonzero(starts)
    ends = [*flat[1:], model.n_envs * model.n_steps]
    return list(zip(flat.tolist(), [int(end) for end in ends], strict=True))


def _unpadded_distributions(model: RecurrentTRPO, cut: int):  # type: ignore[no-untyped-def]
    # pi_theta of every real sample, each sequence run alone through the actor's LSTM from its stored state
    policy, buffer = model.policy, model.rollout_buffer
    observations = th.as_tensor(buffer.observations)
    latents = []
    for start, end in _unpadded_sequences(model, cut):
        # The state stored with a step is the one before it; an episode's first step starts from zeros
        keep = 1.0 - float(buffer.episode_starts.reshape(-1)[start])
        stored_states = (buffer.hidden_states_pi, buffer.cell_states_pi)
        state = tuple(keep * th.as_tensor(stored[start]).unsqueeze(1) for stored in stored_states)
        features = policy.extract_features(observations[start:end], policy.pi_features_extractor)
        output, _ = policy.lstm_actor(features.unsqueeze(1), state)
        latents.append(output.squeeze(1))
    latent = policy.mlp_extractor.forward_actor(th.cat(latents))
    return policy._get_action_dist_from_latent(latent)


def test_gradient_and_fisher_products_over_padded_sequences_equal_the_unpadded_computation() -> None:
    # One rollout, no update yet: the LSTM states stored with each step are those of the current parameters
    model = _model(n_steps=48, batch_size=48, cg_damping=0.0)
    _, callback = model._setup_learn(96)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    # The sampler's random cut (the first draw of NumPy's generator in RolloutBuffer.get), drawn again for the reference
    np.random.seed(7)
    cut = np.random.randint(model.n_envs * model.n_steps)
    np.random.seed(7)
    batch = model._policy_batch()
    objective = model._policy_objective(batch)
    buffer = model.rollout_buffer
    assert len(_unpadded_sequences(model)) > model.n_envs, "the rollout should hold several episodes per env"
    assert batch.observations.shape[0] > batch.actions.shape[0], "the batch should be padded"

    # Reference: each real sample once, in the buffer's order, with its own advantage
    actions = th.as_tensor(buffer.actions).long().flatten()
    advantages = normalize_advantages(th.as_tensor(buffer.advantages).flatten())
    distribution = _unpadded_distributions(model, cut)
    log_prob = distribution.log_prob(actions)
    surrogate = (th.exp(log_prob - log_prob.detach()) * advantages).mean()
    gradient = flat_grad(surrogate, model.actor_params)
    assert th.allclose(objective.gradient, gradient, rtol=1e-4, atol=1e-6)
    assert objective.value == pytest.approx(float(surrogate), abs=1e-6)

    # Fisher: the Hessian of the mean KL over the real samples, by double backward on the unpadded computation
    old = th.distributions.Categorical(logits=distribution.distribution.logits.detach())
    kl = th.distributions.kl_divergence(old, _unpadded_distributions(model, cut).distribution).mean()
    kl_grad = flat_grad(kl, model.actor_params, create_graph=True)
    generator = th.Generator().manual_seed(0)
    vectors = [th.randn(gradient.numel(), generator=generator) for _ in range(3)]
    for fisher_product in ("gauss_newton", "double_backward"):
        model.fisher_product = fisher_product
        fvp = model._fisher_vector_product(batch, objective.distribution, objective.old_distribution)
        for vector in vectors:
            expected = flat_grad(th.dot(kl_grad, vector), model.actor_params, retain_graph=True)
            assert th.allclose(fvp(vector), expected, rtol=1e-3, atol=1e-6), fisher_product


@pytest.mark.parametrize("policy_kwargs", [TINY, {**TINY, "shared_lstm": True, "enable_critic_lstm": False}])
def test_sequences_in_one_lstm_call_equal_sb3_contrib_step_by_step_loop(policy_kwargs: dict) -> None:
    # The resets moved into the initial states (one LSTM call per batch) give sb3-contrib's per-step loop's values,
    # distributions and gradients, on every minibatch of the critic and on the actor's whole rollout
    model = _model(n_steps=48, batch_size=24, policy_kwargs=policy_kwargs)
    _, callback = model._setup_learn(96)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    policy = model.policy
    batches = [*model.rollout_buffer.get(24), next(model.rollout_buffer.get(None))]
    restarts = 0
    for batch in batches:
        n_seq = batch.lstm_states.vf[0].shape[1]
        restarts += int(batch.episode_starts.reshape(n_seq, -1)[:, 0].sum())
        for states, run in (
            (batch.lstm_states.vf, lambda st, es, obs=batch.observations: policy.predict_values(obs, st, es).flatten()),
            (
                batch.lstm_states.pi,
                lambda st, es, obs=batch.observations: policy.get_distribution(obs, st, es)[0].distribution.logits,
            ),
        ):
            reset_states, starts = reset_states_at_sequence_starts(states, batch.episode_starts)
            assert not th.any(starts), "the episode starts are all moved into the states"
            params = [param for param in policy.parameters() if param.requires_grad]
            loop, one_call = run(states, batch.episode_starts), run(reset_states, starts)
            real = batch.mask > 0.5
            assert th.allclose(loop[real], one_call[real], atol=1e-6)
            loop_grad = th.autograd.grad(loop[real].square().sum(), params, allow_unused=True)
            call_grad = th.autograd.grad(one_call[real].square().sum(), params, allow_unused=True)
            for expected, got in zip(loop_grad, call_grad, strict=True):
                assert (expected is None) == (got is None)
                assert expected is None or th.allclose(expected, got, rtol=1e-5, atol=1e-6)
    assert restarts > 0, "some sequences should start an episode (their stored states are reset)"
    # A start after a sequence's first step (not what the buffers make): the inputs are left to sb3-contrib's loop
    states = (th.ones(1, 2, 3), th.ones(1, 2, 3))
    starts = th.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    assert reset_states_at_sequence_starts(states, starts) == (states, starts)
    reset, zeros = reset_states_at_sequence_starts(states, th.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    assert reset[0][0, 0].abs().sum() == 0 and th.equal(reset[1][0, 1], th.ones(3)) and not th.any(zeros)


def test_every_accepted_step_is_inside_the_trust_region_over_real_samples() -> None:
    model = _model(target_kl=0.02)
    recorder = LogRecorder(model)
    model.learn(64)
    for _ in range(3):
        model.learn(64, reset_num_timesteps=False)  # collect, then check the update on this rollout below
    # The same batch as train()'s (same cut of the sampler: same draw of NumPy's generator)
    np.random.seed(3)
    batch = model._policy_batch()
    objective = model._policy_objective(batch)
    np.random.seed(3)
    model.train()
    with th.no_grad():
        _, kl = model._policy_terms(batch, objective.old_log_prob, objective.old_distribution)
    if recorder.values["train/is_line_search_success"][-1]:
        assert float(kl) <= 0.02 * (1 + 1e-5)
        assert float(kl) == pytest.approx(recorder.values["train/kl_divergence_loss"][-1], rel=1e-4)
    accepted = accepted_kls(recorder)
    assert accepted and all(kl <= 0.02 for kl in accepted)


def test_same_seed_same_parameters() -> None:
    first, second = _model().learn(128), _model().learn(128)
    assert th.equal(get_flat_params(list(first.policy.parameters())), get_flat_params(list(second.policy.parameters())))


# ---------------------------------------------------------------------------------------------------------------------
# The rollout: RecurrentPPO's, step for step
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["CartPoleNoVel-v1", "PendulumNoVel-v1"])
def test_rollout_equals_recurrent_ppo_rollout(env_id: str) -> None:
    ppo = RecurrentPPO("MlpLstmPolicy", make_vec_env(env_id, n_envs=2, seed=0), n_steps=40, policy_kwargs=TINY, seed=0)
    trpo = _model(env_id, n_steps=40)
    trpo.policy.load_state_dict(ppo.policy.state_dict())
    buffers = []
    for model in (ppo, trpo):
        model.set_random_seed(1)
        _, callback = model._setup_learn(80)
        for _ in range(2):  # twice: the LSTM states are carried from one rollout to the next
            assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        buffers.append(model.rollout_buffer)
    names = ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns")
    for name in (*names, "hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf"):
        assert np.array_equal(getattr(buffers[0], name), getattr(buffers[1], name)), name
    assert buffers[1].hidden_states_pi[0].any(), "the second rollout starts from the first one's states"


# ---------------------------------------------------------------------------------------------------------------------
# RecurrentPPO's contracts
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        dict(TINY, enable_critic_lstm=True),
        dict(TINY, enable_critic_lstm=False),
        dict(TINY, shared_lstm=True, enable_critic_lstm=False),
        dict(TINY, n_lstm_layers=2),
    ],
)
def test_lstm_options_and_the_critic_never_moves_the_actor(policy_kwargs: dict) -> None:
    model = _model(policy_kwargs=policy_kwargs)
    lstm_actor = {id(param) for param in model.policy.lstm_actor.parameters()}
    assert lstm_actor <= {id(param) for param in model.actor_params}
    assert not lstm_actor & {id(param) for param in model.critic_params}
    model.learn(64)
    actor = get_flat_params(model.actor_params).clone()
    critic = get_flat_params(model.critic_params).clone()
    model._fit_critic(model._whole_rollout())
    assert th.equal(get_flat_params(model.actor_params), actor)
    assert not th.equal(get_flat_params(model.critic_params), critic)


def test_predict_with_states_and_evaluate_policy() -> None:
    model = _model("PendulumNoVel-v1", n_envs=1).learn(64)
    env = model.get_env()
    obs = env.reset()
    state, starts = None, np.ones((1,), dtype=bool)
    _, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
    assert isinstance(state, tuple) and state[0].shape == (1, 1, 8)
    # Same state, same action; another state, another action
    again, _ = model.predict(obs, state=state, episode_start=np.zeros((1,), dtype=bool), deterministic=True)
    other, _ = model.predict(
        obs, state=(state[0] + 1.0, state[1]), episode_start=np.zeros((1,), dtype=bool), deterministic=True
    )
    assert np.array_equal(
        again, model.predict(obs, state=state, episode_start=np.zeros((1,), dtype=bool), deterministic=True)[0]
    )
    assert not np.array_equal(again, other)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=2, warn=False)
    assert np.isfinite(mean)


class _DictObservation(gym.ObservationWrapper):
    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = spaces.Dict({"obs": env.observation_space})

    def observation(self, observation):  # type: ignore[no-untyped-def]
        return {"obs": observation}


def test_dict_observations() -> None:
    env = make_vec_env(lambda: _DictObservation(gym.make("CartPoleNoVel-v1")), n_envs=2, seed=0)
    model = RecurrentTRPO(MultiInputLstmPolicy, env, n_steps=32, batch_size=32, policy_kwargs=TINY, seed=0)
    assert isinstance(model.rollout_buffer, RecurrentDictRolloutBuffer)
    model.learn(128)
    assert model.num_timesteps == 128


def test_save_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _model(ent_coef=0.01, adaptive_kl=True, cg_warm_start=True, target_kl=0.03).learn(128)
    model.save(tmp_path / "model.zip")
    loaded = RecurrentTRPO.load(tmp_path / "model.zip", env=model.get_env())
    assert_same_state(
        model, loaded, ("ent_coef", "adaptive_kl", "cg_warm_start", "target_kl", "target_kl_effective", "batch_size")
    )
    obs = model.get_env().reset()
    starts = np.ones((2,), dtype=bool)
    assert np.array_equal(
        model.predict(obs, episode_start=starts, deterministic=True)[0],
        loaded.predict(obs, episode_start=starts, deterministic=True)[0],
    )
    loaded.learn(64, reset_num_timesteps=False)


def test_invalid_arguments_are_named() -> None:
    env = make_vec_env("CartPoleNoVel-v1", n_envs=1)
    with pytest.raises(ValueError, match="`policy`"):
        RecurrentTRPO(ActorCriticPolicy, env)
    with pytest.raises(ValueError, match="`rollout_buffer_class`"):
        RecurrentTRPO(MlpLstmPolicy, env, rollout_buffer_class=RolloutBuffer)
    with pytest.raises(ValueError, match="`cg_max_steps`"):
        RecurrentTRPO(MlpLstmPolicy, env, cg_max_steps=0)


# ---------------------------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.expensive
def test_memory_beats_no_memory_on_cartpole_without_velocities() -> None:
    # Same budget, seeds and settings: the LSTM policy sees the velocities it must infer; the MLP cannot
    settings = dict(n_steps=128, batch_size=128, seed=0, target_kl=0.02)
    scores = {}
    for name, algorithm, policy_kwargs in (
        ("lstm", RecurrentTRPO, dict(lstm_hidden_size=32, net_arch=[32])),
        ("mlp", TRPO, dict(net_arch=[32, 32])),
    ):
        returns = []
        for seed in (0, 1):
            env = make_vec_env("CartPoleNoVel-v1", n_envs=4, seed=seed)
            policy = "MlpLstmPolicy" if algorithm is RecurrentTRPO else "MlpPolicy"
            model = algorithm(policy, env, policy_kwargs=policy_kwargs, **{**settings, "seed": seed}).learn(30_000)
            returns.append(evaluate_policy(model, make_vec_env("CartPoleNoVel-v1", n_envs=1, seed=100 + seed), 10)[0])
        scores[name] = float(np.mean(returns))
    assert scores["lstm"] > scores["mlp"] + 50, scores


def test_cnn_lstm_policy_on_images() -> None:
    from stable_baselines3.common.envs import FakeImageEnv

    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=False)
    kwargs = dict(lstm_hidden_size=8, features_extractor_kwargs=dict(features_dim=16))
    model = RecurrentTRPO("CnnLstmPolicy", env, n_steps=32, batch_size=32, seed=0, policy_kwargs=kwargs)
    before = get_flat_params(model.actor_params).clone()
    model.learn(64)
    assert not th.equal(get_flat_params(model.actor_params), before)
