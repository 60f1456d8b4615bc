"""
Optuna search spaces of sb3_trpo's TRPO and NPG for the RL Zoo's ``-optimize``, which :func:`sb3_trpo.zoo.register`
puts in the Zoo's sampler table (``trpo_lstm`` with TRPO's). They sample in the Zoo's parameterization
(``n_steps_pow``, ``one_minus_gamma``, ``net_arch`` names), turned into constructor arguments by its
``convert_onpolicy_params``; what they sample and why: docs/guide/tuning.md.
"""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params


def _sample_natural_gradient_params(trial: optuna.Trial) -> dict[str, Any]:
    # What TRPO and NPG share: batch, discount, critic, conjugate gradient, trust region, network
    n_steps_pow = trial.suggest_int("n_steps_pow", 8, 12)  # 256 to 4096 steps per env and update
    batch_size_pow = trial.suggest_int("batch_size_pow", 5, 10)  # critic minibatches, at most the rollout (below)
    sampled: dict[str, Any] = {
        "n_steps_pow": n_steps_pow,
        "batch_size_pow": batch_size_pow,
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 1e-3, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "n_critic_updates": trial.suggest_int("n_critic_updates", 5, 30),
        "cg_max_steps": trial.suggest_int("cg_max_steps", 10, 30),
        "target_kl": trial.suggest_float("target_kl", 3e-3, 0.3, log=True),
        "net_arch": trial.suggest_categorical("net_arch", ["small", "medium"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }
    # Damping relative to the radius: cg_damping = target_kl * ratio (sb3-contrib's step on d action dimensions has
    # both scaled by d; the Zoo's defaults are 0.1 and 0.01, a ratio of 10)
    sampled["cg_damping"] = sampled["target_kl"] * trial.suggest_float("cg_damping_ratio", 1.0, 100.0, log=True)
    trial.set_user_attr("n_steps", 2**n_steps_pow)
    trial.set_user_attr("batch_size", 2**batch_size_pow)
    trial.set_user_attr("gamma", 1 - sampled["one_minus_gamma"])
    trial.set_user_attr("cg_damping", sampled["cg_damping"])
    return sampled


def _constructor_arguments(sampled: dict[str, Any], n_envs: int) -> dict[str, Any]:
    # The Zoo's conversion (powers of two, 1 - gamma, net_arch names), then critic minibatches of at most the rollout
    arguments = convert_onpolicy_params(sampled)
    arguments["batch_size"] = min(arguments["batch_size"], arguments["n_steps"] * max(n_envs, 1))
    return arguments


def sample_npg_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for NPG, with the Zoo's sampler signature (``n_actions`` and ``additional_args`` unused: the radius is
    sampled for the joint KL).

    :return: the constructor arguments
    """
    return _constructor_arguments(_sample_natural_gradient_params(trial), n_envs)


def sample_trpo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for TRPO: NPG's space (:func:`sample_npg_params`) and the line search's shrinking factor.

    :return: the constructor arguments
    """
    sampled = _sample_natural_gradient_params(trial)
    sampled["line_search_shrinking_factor"] = trial.suggest_categorical(
        "line_search_shrinking_factor", [0.5, 0.6, 0.7, 0.8, 0.9]
    )
    return _constructor_arguments(sampled, n_envs)
