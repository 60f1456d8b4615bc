"""MaskableTRPO: TRPO under invalid action masks, on sb3-contrib's maskable building blocks.

Parametrized over the three maskable action spaces the way sb3-contrib's ``test_invalid_actions.py`` is: the
masked actions are never taken, the update's every piece (KL, Fisher products, line search) is taken under the
rollout's masks and checked against dense references, and MaskablePPO's contracts (predict with masks, the
maskable evaluation helpers, ``ActionMasker``, ``use_masking=False``, dict observations, save/load) hold.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete, InvalidActionEnvMultiBinary, InvalidActionEnvMultiDiscrete
from sb3_contrib.common.maskable.buffers import MaskableDictRolloutBuffer
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from sb3_contrib.common.maskable.distributions import MaskableCategorical
from sb3_contrib.common.maskable.evaluation import evaluate_policy
from sb3_contrib.common.maskable.utils import get_action_masks
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.envs import IdentityEnv
from stable_baselines3.common.env_util import make_vec_env

from conftest import LogRecorder, accepted_kls, assert_same_state
from sb3_trpo import MaskableRecurrentTRPO, MaskableTRPO
from sb3_trpo.common.natural_gradient import get_flat_params, masked_categorical_kl
from sb3_trpo.trpo_mask import MultiInputPolicy

TINY = dict(net_arch=[8])
ENVS = {
    "discrete": lambda: InvalidActionEnvDiscrete(dim=6, n_invalid_actions=3),
    "multidiscrete": lambda: InvalidActionEnvMultiDiscrete(dims=[3, 4], n_invalid_actions=3),
    "multibinary": lambda: InvalidActionEnvMultiBinary(dims=4, n_invalid_actions=2),
}


class RefuseInvalidActions(gym.Wrapper):
    """Fails the test the moment an action outside the env's current mask is taken."""

    def action_masks(self) -> np.ndarray:
        return np.asarray(self.env.unwrapped.action_masks(), dtype=bool)  # type: ignore[attr-defined]

    def step(self, action):  # type: ignore[no-untyped-def]
        masks, space = self.action_masks(), self.env.action_space
        if isinstance(space, spaces.Discrete):
            chosen = [int(action)]
        elif isinstance(space, spaces.MultiDiscrete):
            offsets = np.concatenate([[0], np.cumsum(space.nvec)[:-1]])
            chosen = list(offsets + np.asarray(action))
        else:  # MultiBinary: one two-way choice per dimension
            chosen = [2 * index + int(bit) for index, bit in enumerate(np.asarray(action))]
        assert all(masks[index] for index in chosen), f"masked action taken: {action} under {masks}"
        return self.env.step(action)


def _model(kind: str, **kwargs) -> MaskableTRPO:  # type: ignore[no-untyped-def]
    settings = dict(n_steps=64, batch_size=32, policy_kwargs=TINY, seed=0)
    return MaskableTRPO("MlpPolicy", RefuseInvalidActions(ENVS[kind]()), **{**settings, **kwargs})


# ---------------------------------------------------------------------------------------------------------------------
# The masked KL
# ---------------------------------------------------------------------------------------------------------------------


def _reference_kl(old_logits: th.Tensor, new_logits: th.Tensor, masks: th.Tensor) -> th.Tensor:
    # Each sample's KL over its valid actions only (the masked ones never enter): a per-sample loop
    kls = []
    for old, new, mask in zip(old_logits, new_logits, masks, strict=True):
        log_p, log_q = th.log_softmax(old[mask], dim=0), th.log_softmax(new[mask], dim=0)
        kls.append((log_p.exp() * (log_p - log_q)).sum())
    return th.stack(kls)


def test_masked_kl_equals_the_kl_over_valid_actions_and_is_finite() -> None:
    th.manual_seed(0)
    old_logits, new_logits = th.randn(32, 5), th.randn(32, 5, requires_grad=True)
    masks = th.rand(32, 5) > 0.4
    masks[th.arange(32), th.randint(0, 5, (32,))] = True  # at least one valid action per state
    masks[0] = th.tensor([False, False, True, False, False])  # one valid action
    old = MaskableCategorical(logits=old_logits, masks=masks)
    new = MaskableCategorical(logits=new_logits, masks=masks)
    kl = masked_categorical_kl(old, new)
    assert th.allclose(kl, _reference_kl(old_logits, new_logits.detach(), masks), atol=1e-6)
    (grad,) = th.autograd.grad(kl.sum(), new_logits, create_graph=True)
    (second,) = th.autograd.grad((grad * th.randn_like(grad)).sum(), new_logits)
    assert th.isfinite(kl).all() and th.isfinite(grad).all() and th.isfinite(second).all()
    # The masked actions take no gradient; a state with one valid action has KL 0 and a zero gradient (to rounding:
    # sb3-contrib's MaskableCategorical normalizes the raw logits before masking them, so a masked logit's
    # derivative is the difference of two equal terms, about 1e-8, not an exact 0)
    assert th.allclose(grad[~masks], th.zeros_like(grad[~masks]), atol=1e-6)
    assert kl[0] == 0.0 and th.allclose(grad[0], th.zeros(5), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# The update under masks, against dense references
# ---------------------------------------------------------------------------------------------------------------------


def _actor_logits(model: MaskableTRPO, flat: th.Tensor, observations: th.Tensor) -> th.Tensor:
    # The actor's logits as a function of its flat parameters (the policy's own modules, functionally)
    policy = model.policy
    modules = {"policy_net": policy.mlp_extractor.policy_net, "action_net": policy.action_net}
    names = {id(param): (key, name) for key, module in modules.items() for name, param in module.named_parameters()}
    values: dict[str, dict[str, th.Tensor]] = {key: {} for key in modules}
    offset = 0
    for param in model.actor_params:
        key, name = names[id(param)]
        values[key][name] = flat[offset : offset + param.numel()].view(param.shape)
        offset += param.numel()
    features = policy.extract_features(observations, policy.pi_features_extractor)
    latent = th.func.functional_call(modules["policy_net"], values["policy_net"], (features,))
    return th.func.functional_call(modules["action_net"], values["action_net"], (latent,))


def _blocks(model: MaskableTRPO) -> list[int]:
    space = model.action_space
    if isinstance(space, spaces.Discrete):
        return [int(space.n)]
    if isinstance(space, spaces.MultiDiscrete):
        return [int(n) for n in space.nvec]
    return [2] * int(space.n)


@pytest.mark.parametrize("kind", sorted(ENVS))
@pytest.mark.parametrize("fisher_product", ["gauss_newton", "double_backward"])
def test_fisher_product_with_masks_equals_the_explicit_hessian_of_the_masked_kl(kind: str, fisher_product: str) -> None:
    model = _model(kind, n_steps=24, batch_size=24, fisher_product=fisher_product, cg_damping=0.0)
    model.learn(24)
    batch = model._policy_batch()
    masks = batch.action_masks.bool()
    assert not masks.all(), "the rollout should hold masked actions"
    objective = model._policy_objective(batch)
    fvp = model._fisher_vector_product(batch, objective.distribution, objective.old_distribution)
    old_flat = get_flat_params(model.actor_params).detach()
    blocks = _blocks(model)
    old_logits = _actor_logits(model, old_flat, batch.observations).detach()

    def mean_masked_kl(flat: th.Tensor) -> th.Tensor:
        logits = _actor_logits(model, flat, batch.observations)
        old_split, new_split = th.split(old_logits, blocks, dim=1), th.split(logits, blocks, dim=1)
        mask_split = th.split(masks, blocks, dim=1)
        return sum(_reference_kl(*parts).mean() for parts in zip(old_split, new_split, mask_split, strict=True))

    hessian = th.autograd.functional.hessian(mean_masked_kl, old_flat)
    identity = th.eye(old_flat.numel())
    products = th.stack([fvp(column) for column in identity], dim=1)
    assert th.allclose(products, hessian, rtol=1e-4, atol=1e-6), (products - hessian).abs().max()


class CheckTrustRegion(BaseCallback):
    """After every update, the masked KL between the rollout's pi_old and the new policy is within target_kl."""

    def __init__(self) -> None:
        super().__init__()
        self.n_checked = 0

    def _on_rollout_start(self) -> None:
        model = self.model
        if model._n_updates == 0 or not hasattr(self, "old"):
            return
        batch, old = self.batch, self.old
        with th.no_grad():
            kl = model._policy_terms(batch, th.zeros(1), old)[1]
        assert float(kl) <= model.target_kl * (1 + 1e-5)
        self.n_checked += 1

    def _on_rollout_end(self) -> None:
        from sb3_trpo.common.natural_gradient import detached_distribution

        self.batch = self.model._policy_batch()
        with th.no_grad():
            self.old = detached_distribution(self.model._distribution_on(self.batch))

    def _on_step(self) -> bool:
        return True


@pytest.mark.parametrize("kind", sorted(ENVS))
def test_every_accepted_step_is_inside_the_masked_trust_region_and_masked_actions_are_never_taken(kind: str) -> None:
    model = _model(kind, target_kl=0.02)
    recorder = LogRecorder(model)
    check = CheckTrustRegion()
    model.learn(64 * 6, callback=check)  # RefuseInvalidActions fails on any masked action
    assert check.n_checked == 5
    accepted = accepted_kls(recorder)
    assert accepted and all(kl <= 0.02 for kl in accepted)


def test_a_state_with_one_valid_action_gives_no_gradient_and_no_nan() -> None:
    # Every state has exactly one valid action: the objective is constant, the gradient zero, no step is taken
    model = MaskableTRPO(
        "MlpPolicy",
        InvalidActionEnvDiscrete(dim=4, n_invalid_actions=3),
        n_steps=32,
        batch_size=32,
        policy_kwargs=TINY,
        seed=0,
    )
    model.learn(32)
    actor = get_flat_params(model.actor_params).clone()
    batch = model._policy_batch()
    objective = model._policy_objective(batch)
    assert th.equal(objective.gradient, th.zeros_like(objective.gradient))
    recorder = LogRecorder(model)
    model.train()
    assert th.equal(get_flat_params(model.actor_params), actor)
    assert recorder.values["train/step_skipped"] == [1.0]
    assert all(np.isfinite(values[0]) for values in recorder.values.values() if isinstance(values[0], float))


@pytest.mark.parametrize("kind", sorted(ENVS))
def test_learns_the_masked_identity_tasks(kind: str) -> None:
    env = ENVS[kind]()
    model = MaskableTRPO("MlpPolicy", RefuseInvalidActions(env), n_steps=256, batch_size=64, seed=0, target_kl=0.05)
    before, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=10, warn=False)
    model.learn(2560)
    after, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=10, warn=False)
    # 100 steps per episode, reward 1 per correct step; random masked play scores well below
    assert after >= 85 and after > before + 20, (before, after)


def test_same_seed_same_parameters() -> None:
    # (the env draws from NumPy's global generator, which the model seeds: one model at a time)
    first = _model("multidiscrete").learn(128)
    second = _model("multidiscrete").learn(128)
    assert th.equal(get_flat_params(list(first.policy.parameters())), get_flat_params(list(second.policy.parameters())))


# ---------------------------------------------------------------------------------------------------------------------
# The rollout: MaskablePPO's, step for step
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(ENVS))
def test_rollout_equals_maskable_ppo_rollout(kind: str) -> None:
    ppo = MaskablePPO("MlpPolicy", make_vec_env(ENVS[kind], n_envs=2), n_steps=16, policy_kwargs=TINY, seed=0)
    trpo = MaskableTRPO("MlpPolicy", make_vec_env(ENVS[kind], n_envs=2), n_steps=16, batch_size=32, policy_kwargs=TINY, seed=0)
    trpo.policy.load_state_dict(ppo.policy.state_dict())
    buffers = []
    for model in (ppo, trpo):
        model.set_random_seed(1)
        for rank, env in enumerate(model.env.envs):
            env.action_space.seed(1 + rank)
        _, callback = model._setup_learn(32)
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        buffers.append(model.rollout_buffer)
    for name in ("observations", "actions", "action_masks", "rewards", "episode_starts", "values", "log_probs", "advantages"):
        assert np.array_equal(getattr(buffers[0], name), getattr(buffers[1], name)), name
    assert not buffers[1].action_masks.all()


# ---------------------------------------------------------------------------------------------------------------------
# MaskablePPO's contracts
# ---------------------------------------------------------------------------------------------------------------------


def test_predict_with_masks_and_maskable_evaluation_helpers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _model("discrete")
    eval_callback = MaskableEvalCallback(
        RefuseInvalidActions(ENVS["discrete"]()), eval_freq=64, n_eval_episodes=2, log_path=str(tmp_path)
    )
    model.learn(128, callback=eval_callback)
    assert eval_callback.evaluations_results and len(eval_callback.evaluations_results) == 2
    env = model.get_env()
    obs = env.reset()
    for _ in range(50):
        masks = get_action_masks(env)
        action, state = model.predict(obs, action_masks=masks, deterministic=True)
        assert state is None and masks[0][int(action[0])]
        obs, *_ = env.step(action)
    # A single allowed action is always the one chosen, deterministic or not
    only = np.zeros((1, 6), dtype=bool)
    only[0, 4] = True
    for deterministic in (True, False):
        assert int(model.predict(obs, action_masks=only, deterministic=deterministic)[0][0]) == 4


# The masking contracts MaskableRecurrentTRPO shares (ActionMasking): each with its own policy
MASKING_ALGORITHMS = {
    "MaskableTRPO": (MaskableTRPO, "MlpPolicy", "CnnPolicy", TINY),
    "MaskableRecurrentTRPO": (MaskableRecurrentTRPO, "MlpLstmPolicy", "CnnLstmPolicy", dict(lstm_hidden_size=8, net_arch=[8])),
}


@pytest.mark.parametrize("name", sorted(MASKING_ALGORITHMS))
def test_action_masker_wrapper_and_env_without_masks(name: str) -> None:
    algorithm, policy, _, policy_kwargs = MASKING_ALGORITHMS[name]

    def mask_fn(env: gym.Env) -> np.ndarray:
        return np.array([True, False, True, False])

    env = ActionMasker(IdentityEnv(dim=4, ep_length=10), mask_fn)
    model = algorithm(policy, env, n_steps=32, batch_size=32, policy_kwargs=policy_kwargs, seed=0)
    model.learn(64)
    assert set(np.unique(model.rollout_buffer.actions)) <= {0.0, 2.0}
    # Without masks: an error that says what to do; with use_masking=False, it trains without them
    bare = algorithm(policy, IdentityEnv(dim=4, ep_length=10), n_steps=32, batch_size=32, policy_kwargs=policy_kwargs, seed=0)
    with pytest.raises(ValueError, match="ActionMasker"):
        bare.learn(32)
    bare.learn(64, use_masking=False)
    assert bare.rollout_buffer.action_masks.all() and len(set(np.unique(bare.rollout_buffer.actions))) > 2


class _DictObservation(gym.ObservationWrapper):
    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = spaces.Dict({"obs": env.observation_space})

    def observation(self, observation):  # type: ignore[no-untyped-def]
        return {"obs": observation}


def test_dict_observations_and_several_envs() -> None:
    env = make_vec_env(lambda: _DictObservation(RefuseInvalidActions(ENVS["discrete"]())), n_envs=2)
    model = MaskableTRPO(MultiInputPolicy, env, n_steps=32, batch_size=32, policy_kwargs=TINY, seed=0)
    assert isinstance(model.rollout_buffer, MaskableDictRolloutBuffer)
    model.learn(128)
    assert model.num_timesteps == 128


def test_save_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _model("multibinary", ent_coef=0.01, adaptive_kl=True, cg_warm_start=True, target_kl=0.03)
    model.learn(128)
    model.save(tmp_path / "model.zip")
    loaded = MaskableTRPO.load(tmp_path / "model.zip", env=model.get_env())
    assert_same_state(
        model, loaded, ("ent_coef", "adaptive_kl", "cg_warm_start", "target_kl", "target_kl_effective", "line_search_max_iter")
    )
    obs = model.get_env().reset()
    masks = get_action_masks(model.get_env())
    assert np.array_equal(
        model.predict(obs, action_masks=masks, deterministic=True)[0],
        loaded.predict(obs, action_masks=masks, deterministic=True)[0],
    )
    # A loaded model keeps learning under masks
    loaded.learn(64, reset_num_timesteps=False)


def test_invalid_arguments_are_named() -> None:
    env = ENVS["discrete"]()
    with pytest.raises(ValueError, match="`policy`"):
        MaskableTRPO(ActorCriticPolicy, env)  # SB3's policy takes no masks
    with pytest.raises(ValueError, match="`rollout_buffer_class`"):
        MaskableTRPO("MlpPolicy", env, rollout_buffer_class=RolloutBuffer)
    with pytest.raises(ValueError, match="`target_kl`"):
        MaskableTRPO("MlpPolicy", env, target_kl=0.0)
    with pytest.raises(AssertionError, match="only supports"):
        MaskableTRPO("MlpPolicy", "Pendulum-v1")


@pytest.mark.parametrize("name", sorted(MASKING_ALGORITHMS))
def test_cnn_policy_on_images(name: str) -> None:
    # FakeImageEnv's Discrete actions under a fixed mask (ActionMasker): the masked action is never taken
    from stable_baselines3.common.envs import FakeImageEnv

    algorithm, _, policy, policy_kwargs = MASKING_ALGORITHMS[name]
    image_env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1)
    valid = np.isin(np.arange(image_env.action_space.n), [0, 2])
    env = ActionMasker(image_env, lambda _: valid)
    kwargs = {**policy_kwargs, "features_extractor_kwargs": dict(features_dim=16)}
    model = algorithm(policy, env, n_steps=32, batch_size=32, seed=0, policy_kwargs=kwargs)
    model.learn(64)
    assert set(np.unique(model.rollout_buffer.actions)) == {0.0, 2.0}
