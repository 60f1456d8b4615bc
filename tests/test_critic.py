"""The closed-form critic gradient (sb3_trpo.common.critic) equals autograd's, and TRPO uses it only where it applies."""

import itertools
from types import SimpleNamespace

import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn
from torch.nn import functional as F

from sb3_trpo import TRPO
from sb3_trpo.common.critic import MlpRegression, fast_value_regression, fused_adam_step
from sb3_trpo.common.mlp import ACTIVATIONS, activation_derivative, mlp_layers


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
@pytest.mark.parametrize("hidden", [[], [7], [16, 5]])
@pytest.mark.parametrize("bias", [True, False])
def test_closed_form_gradient_matches_autograd(activation, hidden, bias):
    th.manual_seed(0)
    sizes = [4, *hidden]
    modules: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        modules += [nn.Linear(n_in, n_out, bias=bias), activation()]
    body = nn.Sequential(*modules).double()
    head = nn.Linear(sizes[-1], 1, bias=bias).double()
    x, y = th.randn(9, 4, dtype=th.float64), th.randn(9, dtype=th.float64)

    regression = MlpRegression(mlp_layers([body, head]))
    loss = regression.bind()(x, y)
    closed_form = [param.grad.clone() for param in regression.parameters]

    reference = F.mse_loss(y, head(body(x)).flatten())
    expected = th.autograd.grad(reference, regression.parameters)
    assert loss == pytest.approx(reference.item(), rel=1e-12)
    for grad, expected_grad in zip(closed_form, expected, strict=True):
        assert th.allclose(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_unsupported_chains_fall_back():
    assert mlp_layers([nn.Sequential(nn.Linear(3, 3), nn.ELU()), nn.Linear(3, 1)]) is None
    assert mlp_layers([nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Tanh()), nn.Linear(3, 1)]) is None
    assert mlp_layers([nn.Sequential(nn.Tanh()), nn.Linear(3, 1)]) is None
    with pytest.raises(ValueError, match="one output"):
        MlpRegression(mlp_layers([nn.Linear(3, 2)]))


@pytest.mark.parametrize(
    "policy_kwargs,fast",
    [
        (dict(net_arch=[8]), True),
        (dict(net_arch=dict(pi=[8], vf=[8, 4]), activation_fn=nn.ReLU), True),
        (dict(net_arch=[8], share_features_extractor=False), True),  # FlattenExtractor has no parameter
        (dict(net_arch=[8], activation_fn=nn.ELU), False),
    ],
)
def test_trpo_uses_the_closed_form_only_where_it_applies(policy_kwargs, fast):
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, policy_kwargs=policy_kwargs, seed=0)
    assert (model._value_regression is not None) is fast
    model.learn(64)


def test_critic_update_matches_the_autograd_path():
    """Critic epochs with the closed-form gradient and with autograd end at the same critic (up to float32 rounding)."""

    def run(fast: bool) -> list[th.Tensor]:
        model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=16, policy_kwargs=dict(net_arch=[8]), seed=0)
        model.learn(64)  # fill the buffer; the update it makes is identical for both runs
        if not fast:
            model._value_regression = None
        th.manual_seed(1)
        returns, observations = th.randn(64), th.randn(64, 3)
        model.n_critic_updates = 3
        model._fit_critic(SimpleNamespace(observations=observations, returns=returns))  # type: ignore[arg-type]
        return [param.detach().clone() for param in model.critic_params]

    for fast_param, autograd_param in zip(run(True), run(False), strict=True):
        assert th.allclose(fast_param, autograd_param, rtol=1e-5, atol=1e-6)


def test_non_finite_critic_loss_is_skipped():
    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[8]), seed=0)
    model.learn(64)
    before = [param.detach().clone() for param in model.critic_params]
    returns = th.full((64,), float("nan"))
    loss, skipped = model._fit_critic(SimpleNamespace(observations=th.zeros(64, 3), returns=returns))  # type: ignore[arg-type]
    assert skipped == model.n_critic_updates * 2
    assert all(th.equal(a, b) for a, b in zip(before, model.critic_params, strict=True))
    assert loss != loss  # NaN: nothing was fitted


def test_fast_value_regression_requires_the_critic_parameters():
    policy = ActorCriticPolicy(spaces.Box(-1, 1, (3,)), spaces.Discrete(2), lambda _: 1e-3, net_arch=[8])
    critic = list(policy.mlp_extractor.value_net.parameters()) + list(policy.value_net.parameters())
    assert fast_value_regression(policy, critic) is not None
    assert fast_value_regression(policy, critic[:-1]) is None


@pytest.mark.parametrize("weight_decay", [0, 0.0, 1e-3])  # 0: Adam's default, an int
def test_fused_adam_shortcut_is_bit_for_bit_optimizer_step(weight_decay):
    th.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    optimizers = [th.optim.Adam(net.parameters(), lr=3e-3, eps=1e-5, weight_decay=weight_decay, fused=True) for net in nets]
    regressions = [MlpRegression(mlp_layers([net])) for net in nets]
    x, y = th.randn(16, 3), th.randn(16)
    shortcut = None
    for step in range(5):
        for index in range(2):
            regressions[index].bind()(x, y + step)
        optimizers[0].step()
        if shortcut is None:
            optimizers[1].step()  # first step creates Adam's state
            shortcut = fused_adam_step(optimizers[1])
            assert shortcut is not None
        else:
            shortcut()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert th.equal(a, b)
    state_a, state_b = optimizers[0].state_dict()["state"], optimizers[1].state_dict()["state"]
    for key in state_a:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert th.equal(state_a[key][name], state_b[key][name])


def test_fused_adam_shortcut_declines_other_optimizers():
    net = nn.Linear(3, 1)
    net(th.randn(2, 3)).sum().backward()
    for optimizer in (
        th.optim.Adam(net.parameters()),
        th.optim.SGD(net.parameters(), lr=0.1),
        th.optim.Adam(net.parameters(), fused=True, amsgrad=True),
    ):
        optimizer.step()
        assert fused_adam_step(optimizer) is None
    fresh = th.optim.Adam(net.parameters(), fused=True)  # no state yet
    assert fused_adam_step(fresh) is None


def test_trpo_default_critic_optimizer_takes_the_fused_shortcut():
    # With SB3's default optimizer settings (Adam, weight_decay=0 as an int) the shortcut must apply:
    # it once declined them silently, leaving the critic on the slow optimizer.step() path
    from sb3_trpo import TRPO

    model = TRPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, n_critic_updates=1, seed=0)
    model.learn(64)
    assert model.policy.optimizer.param_groups[0]["weight_decay"] == 0
    assert fused_adam_step(model.policy.optimizer) is not None


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
@pytest.mark.parametrize("dtype", [th.float32, th.float64])
def test_activation_gradients_from_their_formulas_are_autograds_bit_for_bit(activation, dtype):
    forward = ACTIVATIONS[activation]

    def backward(grad_output: th.Tensor, output: th.Tensor) -> th.Tensor:
        # as the critic's backward pass (sb3_trpo.common.mlp.jacobian_transpose_vector) applies it
        return grad_output * activation_derivative(forward, output)

    generator = th.Generator().manual_seed(0)
    for shape in [(1,), (7,), (64, 3), (128, 64), (1000,)]:
        inputs = th.randn(shape, generator=generator, dtype=dtype, requires_grad=True)
        grad_output = th.randn(shape, generator=generator, dtype=dtype)
        output = activation()(inputs)
        (expected,) = th.autograd.grad(output, inputs, grad_output)
        assert th.equal(forward(inputs.detach()), output.detach())
        assert th.equal(backward(grad_output, output.detach()), expected)
