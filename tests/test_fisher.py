"""Fast Gauss-Newton Fisher-vector products (sb3_trpo.common.fisher) against double backward and an explicit Hessian."""

import copy
from typing import Any

import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import set_random_seed

from sb3_trpo import TRPO
from sb3_trpo.common.fisher import (
    bernoulli_fisher_product,
    categorical_fisher_product,
    distribution_fisher_vector_product,
    mlp_fisher_vector_product,
    normal_fisher_product,
    supports_gauss_newton,
)
from sb3_trpo.common.natural_gradient import (
    conjugate_gradient,
    detached_distribution,
    fisher_vector_product,
    flat_grad,
    get_flat_params,
    kl_old_new,
)
from sb3_trpo.common.policies import actor_critic_parameters

ACTION_SPACES: dict[str, tuple[spaces.Space, dict[str, Any]]] = {
    "gaussian": (spaces.Box(-1, 1, (2,)), {}),
    "gsde": (spaces.Box(-1, 1, (2,)), {"use_sde": True}),
    "categorical": (spaces.Discrete(3), {}),
    "multicategorical": (spaces.MultiDiscrete([2, 3]), {}),
    "bernoulli": (spaces.MultiBinary(3), {}),
}
DAMPING = 0.1
N_SAMPLES = 12


def make_policy(kind: str) -> ActorCriticPolicy:
    th.manual_seed(0)
    action_space, kwargs = ACTION_SPACES[kind]
    policy = ActorCriticPolicy(spaces.Box(-1, 1, (3,)), action_space, lambda _: 1e-3, net_arch=[8], **kwargs)
    if kwargs.get("use_sde"):
        policy.reset_noise()
    # Move away from the initialization (zero action-net weights would hide errors in some Jacobian blocks)
    with th.no_grad():
        for param in policy.parameters():
            param.add_(0.3 * th.randn_like(param))
    return policy


def reference_fvp(policy: ActorCriticPolicy, params: list[th.nn.Parameter], observations: th.Tensor) -> Any:
    distribution = policy.get_distribution(observations)
    kl = kl_old_new(detached_distribution(distribution), distribution).mean()
    kl_grad = flat_grad(kl, params, create_graph=True)
    return lambda vector: fisher_vector_product(kl_grad, params, vector, DAMPING)


class _MeanKL(th.nn.Module):
    """Mean KL(pi_old || pi_theta) on a fixed batch, as a module for ``torch.func.functional_call``."""

    def __init__(self, policy: ActorCriticPolicy, observations: th.Tensor) -> None:
        super().__init__()
        self.policy = policy
        self.observations = observations
        self.old_dist = detached_distribution(policy.get_distribution(observations))

    def forward(self) -> th.Tensor:
        return kl_old_new(self.old_dist, self.policy.get_distribution(self.observations)).mean()


def explicit_fisher(policy: ActorCriticPolicy, params: list[th.nn.Parameter], observations: th.Tensor) -> th.Tensor:
    """Hessian of the mean KL(pi_old || pi_theta) at theta_old, over the flattened actor parameters."""
    module = _MeanKL(policy, observations)
    names_by_id = {id(param): f"policy.{name}" for name, param in policy.named_parameters()}
    names = [names_by_id[id(param)] for param in params]
    numels = [param.numel() for param in params]

    def mean_kl(flat: th.Tensor) -> th.Tensor:
        values = [chunk.view_as(param) for chunk, param in zip(th.split(flat, numels), params, strict=True)]
        return th.func.functional_call(module, dict(zip(names, values, strict=True)), ())

    hessian = th.autograd.functional.hessian(mean_kl, get_flat_params(params))
    assert isinstance(hessian, th.Tensor)
    return hessian


def gauss_newton_fisher_vector_product(
    policy: ActorCriticPolicy, params: list[th.nn.Parameter], observations: th.Tensor, damping: float
) -> Any:
    """The Gauss-Newton product through autograd on ``policy.get_distribution``, as TRPO builds it where the closed
    form does not apply."""
    return distribution_fisher_vector_product(policy.get_distribution(observations), params, damping)


def relative_error(actual: th.Tensor, expected: th.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


@pytest.mark.parametrize("kind", list(ACTION_SPACES))
def test_supported(kind: str) -> None:
    policy = make_policy(kind)
    assert supports_gauss_newton(policy.get_distribution(th.zeros(2, 3)))


@pytest.mark.parametrize("sub_sampling_factor", [1, 3])
@pytest.mark.parametrize("kind", list(ACTION_SPACES))
def test_gauss_newton_equals_double_backward_and_hessian(kind: str, sub_sampling_factor: int) -> None:
    policy = make_policy(kind)
    params, _ = actor_critic_parameters(policy)
    observations = th.randn(N_SAMPLES, 3)[::sub_sampling_factor]
    fast = gauss_newton_fisher_vector_product(policy, params, observations, DAMPING)
    reference = reference_fvp(policy, params, observations)
    fisher = explicit_fisher(policy, params, observations)
    generator = th.Generator().manual_seed(1)
    for _ in range(3):
        vector = th.randn(fisher.shape[0], generator=generator)
        expected = fisher @ vector + DAMPING * vector
        assert relative_error(reference(vector), expected) < 1e-5
        assert relative_error(fast(vector), expected) < 1e-5
        assert relative_error(fast(vector), reference(vector)) < 1e-5


@pytest.mark.parametrize("kind", list(ACTION_SPACES))
def test_cg_direction_equals_reference(kind: str) -> None:
    policy = make_policy(kind)
    params, _ = actor_critic_parameters(policy)
    observations = th.randn(N_SAMPLES, 3)
    gradient = th.randn(sum(param.numel() for param in params), generator=th.Generator().manual_seed(2))
    fast = conjugate_gradient(gauss_newton_fisher_vector_product(policy, params, observations, DAMPING), gradient, 10)
    reference = conjugate_gradient(reference_fvp(policy, params, observations), gradient, 10)
    assert fast.n_iter == reference.n_iter
    assert relative_error(fast.x, reference.x) < 1e-4


@pytest.mark.parametrize(
    "kind,policy_kwargs",
    [
        ("gaussian", dict(net_arch=[8])),
        ("gaussian", dict(net_arch=dict(pi=[6, 5], vf=[4]), activation_fn=th.nn.ReLU, log_std_init=-0.5)),
        ("gaussian", dict(net_arch=[])),
        ("categorical", dict(net_arch=[8, 7])),
        ("categorical", dict(net_arch=[], share_features_extractor=False)),
    ],
)
def test_mlp_closed_form_equals_hessian_and_autograd(kind: str, policy_kwargs: dict[str, Any]) -> None:
    th.manual_seed(0)
    action_space, _ = ACTION_SPACES[kind]
    policy = ActorCriticPolicy(spaces.Box(-1, 1, (3,)), action_space, lambda _: 1e-3, **policy_kwargs)
    with th.no_grad():
        for param in policy.parameters():
            param.add_(0.3 * th.randn_like(param))
    params, _ = actor_critic_parameters(policy)
    observations = th.randn(N_SAMPLES, 3)
    closed_form = mlp_fisher_vector_product(policy, params, observations, DAMPING)
    assert closed_form is not None
    autograd = gauss_newton_fisher_vector_product(policy, params, observations, DAMPING)
    fisher = explicit_fisher(policy, params, observations)
    generator = th.Generator().manual_seed(3)
    for _ in range(3):
        vector = th.randn(fisher.shape[0], generator=generator)
        assert relative_error(closed_form(vector), fisher @ vector + DAMPING * vector) < 1e-5
        assert relative_error(closed_form(vector), autograd(vector)) < 1e-5
    # Parameters in another order: the flat vectors follow params
    reordered = params[::-1]
    vector = th.randn(fisher.shape[0], generator=generator)
    product = mlp_fisher_vector_product(policy, reordered, observations, DAMPING)
    assert product is not None
    assert (
        relative_error(product(vector), gauss_newton_fisher_vector_product(policy, reordered, observations, DAMPING)(vector))
        < 1e-5
    )


@pytest.mark.parametrize("kind", ["gsde", "multicategorical", "bernoulli"])
def test_mlp_closed_form_declines_other_distributions(kind: str) -> None:
    policy = make_policy(kind)
    params, _ = actor_critic_parameters(policy)
    assert mlp_fisher_vector_product(policy, params, th.randn(4, 3), DAMPING) is None
    # and a parameter list that is not exactly the actor's
    gaussian = make_policy("gaussian")
    actor, _ = actor_critic_parameters(gaussian)
    assert mlp_fisher_vector_product(gaussian, actor[1:], th.randn(4, 3), DAMPING) is None


def test_fisher_products_leave_the_objectives_distribution_untouched() -> None:
    # SB3's policy overwrites its one distribution object at each call; the objective's pi_theta is a copy, so building
    # the Fisher products (gSDE: through autograd, on a recomputed, sub-sampled pi_theta) leaves it as it was
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, use_sde=True, sub_sampling_factor=2, seed=0)
    model.learn(64)
    batch = model._policy_batch()
    objective = model._policy_objective(batch)
    loc = objective.distribution.distribution.loc
    model._search_direction(batch, objective)
    assert objective.distribution.distribution.loc is loc and loc.shape[0] == 64


def test_output_fisher_products_match_dense() -> None:
    generator = th.Generator().manual_seed(3)
    logits, tangent = th.randn(4, 5, generator=generator), th.randn(4, 5, generator=generator)
    probs = th.softmax(logits, dim=-1)
    dense = th.diag_embed(probs) - probs.unsqueeze(-1) * probs.unsqueeze(-2)
    assert th.allclose(categorical_fisher_product(logits, tangent), (dense @ tangent.unsqueeze(-1)).squeeze(-1), atol=1e-6)
    sigmoid = th.sigmoid(logits)
    assert th.allclose(bernoulli_fisher_product(logits, tangent), sigmoid * (1 - sigmoid) * tangent)
    scale = th.rand(4, 5, generator=generator) + 0.5
    d_loc, d_scale = normal_fisher_product(scale, tangent, tangent)
    assert th.allclose(d_loc, tangent / scale**2) and th.allclose(d_scale, 2 * tangent / scale**2)


def test_fisher_product_argument_is_validated() -> None:
    with pytest.raises(ValueError, match="fisher_product"):
        TRPO("MlpPolicy", "CartPole-v1", fisher_product="exact")


@pytest.mark.parametrize("sub_sampling_factor", [1, 2])
@pytest.mark.parametrize("env_id,kwargs", [("Pendulum-v1", {"use_sde": True}), ("CartPole-v1", {})])
def test_train_same_step_both_paths(env_id: str, kwargs: dict[str, Any], sub_sampling_factor: int) -> None:
    """One update from the same weights and rollout: both Fisher products give the same new actor parameters."""
    settings = dict(n_steps=64, batch_size=32, n_critic_updates=1, sub_sampling_factor=sub_sampling_factor, seed=0, **kwargs)
    fast = TRPO("MlpPolicy", env_id, policy_kwargs=dict(net_arch=[8]), **settings)
    reference = TRPO("MlpPolicy", env_id, policy_kwargs=dict(net_arch=[8]), fisher_product="double_backward", **settings)
    reference.policy.load_state_dict(fast.policy.state_dict())
    _, callback = fast._setup_learn(64, None)
    fast.collect_rollouts(fast.env, callback, fast.rollout_buffer, fast.n_steps)  # type: ignore[arg-type]
    reference.rollout_buffer = copy.deepcopy(fast.rollout_buffer)
    reference.set_logger(fast.logger)
    old_actor = get_flat_params(fast.actor_params)
    for model in (fast, reference):
        set_random_seed(0)  # the rollout buffer shuffles the batch with numpy: same sub-sample in both
        model.train()
    fast_actor, reference_actor = get_flat_params(fast.actor_params), get_flat_params(reference.actor_params)
    fast_step, reference_step = fast_actor - old_actor, reference_actor - old_actor
    assert reference_step.norm() > 0  # a step was taken
    # Same step up to float32 rounding through CG
    assert relative_error(fast_step, reference_step) < 1e-3


@pytest.mark.skipif(not th.cuda.is_available(), reason="CUDA is not available")
def test_train_on_cuda() -> None:
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, n_critic_updates=2, device="cuda", seed=0)
    model.learn(64)
    assert model.policy.device.type == "cuda"
    assert all(param.is_cuda for param in model.actor_params)


def test_trpo_uses_the_closed_form_for_mlp_actors(monkeypatch: pytest.MonkeyPatch) -> None:
    import sb3_trpo.common.on_policy_ng

    made = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        product = mlp_fisher_vector_product(*args, **kwargs)
        made.append(product is not None)
        return product

    monkeypatch.setattr(sb3_trpo.common.on_policy_ng, "mlp_fisher_vector_product", recording)
    TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, n_critic_updates=1, seed=0).learn(128)
    TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, n_critic_updates=1, use_sde=True, seed=0).learn(128)
    assert made == [True, True, False, False]
