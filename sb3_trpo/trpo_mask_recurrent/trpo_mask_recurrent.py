"""MaskableRecurrentTRPO: TRPO with invalid action masking and an LSTM policy."""

from typing import ClassVar

from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy

from sb3_trpo.common.maskable.algorithm import ActionMasking
from sb3_trpo.common.maskable.buffers import MaskableRecurrentDictRolloutBuffer, MaskableRecurrentRolloutBuffer
from sb3_trpo.common.maskable.policies import MaskableRecurrentActorCriticPolicy
from sb3_trpo.common.recurrent.algorithm import RecurrentNaturalGradient
from sb3_trpo.trpo.trpo import TRPO
from sb3_trpo.trpo_mask_recurrent.policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy


class MaskableRecurrentTRPO(ActionMasking, RecurrentNaturalGradient, TRPO):  # type: ignore[misc]
    """
    Trust Region Policy Optimization (TRPO) with invalid action masking and recurrent (LSTM) policies.

    Paper (TRPO): https://arxiv.org/abs/1502.05477; invalid action masking: https://arxiv.org/abs/2006.14171
    Code: an independent implementation, on sb3-contrib's recurrent policies with its masked distributions
    (:mod:`sb3_trpo.common.maskable.policies`) and recurrent buffers that also store the masks
    (:mod:`sb3_trpo.common.maskable.buffers`).

    RecurrentTRPO's update over padded sequences (:class:`sb3_trpo.common.recurrent.algorithm.RecurrentNaturalGradient`)
    under MaskableTRPO's masking (:class:`sb3_trpo.common.maskable.algorithm.ActionMasking`): every action distribution
    of the update is the masked one of the rollout's own masks, and the bound ``mean KL(pi_old || pi_theta) <= target_kl``
    is over the real samples. MaskablePPO's API for the masks (``learn(..., use_masking=True)``,
    ``predict(..., action_masks=...)``) and RecurrentPPO's for the memory (``predict(obs, state, episode_start)``,
    ``shared_lstm`` / ``enable_critic_lstm`` in ``policy_kwargs``).

    :param policy: The policy model to use (MlpLstmPolicy, CnnLstmPolicy, MultiInputLstmPolicy, or a
        :class:`~sb3_trpo.common.maskable.policies.MaskableRecurrentActorCriticPolicy`)
    :param env: The environment to learn from (if registered in Gym, can be str); Discrete, MultiDiscrete or
        MultiBinary actions

    Every other parameter is TRPO's (:class:`sb3_trpo.TRPO`; ``batch_size`` as in RecurrentTRPO; no gSDE, the
    actions being discrete); ``rollout_buffer_class`` must be one of :mod:`sb3_trpo.common.maskable.buffers` (None:
    chosen from the observation space).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpLstmPolicy": MlpLstmPolicy,
        "CnnLstmPolicy": CnnLstmPolicy,
        "MultiInputLstmPolicy": MultiInputLstmPolicy,
    }
    _supported_action_spaces = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)

    rollout_buffer_classes = (MaskableRecurrentRolloutBuffer, MaskableRecurrentDictRolloutBuffer)
    _policy_base = MaskableRecurrentActorCriticPolicy

    policy: MaskableRecurrentActorCriticPolicy
