"""RecurrentTRPO: TRPO with an LSTM policy, on sb3-contrib's recurrent policies and rollout buffers."""

from typing import ClassVar

from stable_baselines3.common.policies import BasePolicy

from sb3_trpo.common.recurrent.algorithm import RecurrentNaturalGradient
from sb3_trpo.trpo.trpo import TRPO
from sb3_trpo.trpo_recurrent.policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy


class RecurrentTRPO(RecurrentNaturalGradient, TRPO):
    """
    Trust Region Policy Optimization (TRPO) with recurrent (LSTM) policies.

    Paper (TRPO): https://arxiv.org/abs/1502.05477
    Code: an independent implementation, with sb3-contrib's recurrent building blocks (policies, rollout buffers,
    ``RNNStates``) and RecurrentPPO's API.

    TRPO's update (:class:`sb3_trpo.TRPO`, same constructor) over whole sequences
    (:class:`sb3_trpo.common.recurrent.algorithm.RecurrentNaturalGradient`): the LSTM is re-run over the rollout's
    padded sequences for the surrogate, ``pi_old``, the KL, the Fisher-vector products and each line-search candidate,
    and only the real samples enter any mean. Use the policies' ``shared_lstm`` / ``enable_critic_lstm`` (in
    ``policy_kwargs``) as with RecurrentPPO: the actor's LSTM moves only with the trust-region step (with
    ``shared_lstm`` the critic reads its output detached).

    :param policy: The policy model to use (MlpLstmPolicy, CnnLstmPolicy, MultiInputLstmPolicy, or a
        ``RecurrentActorCriticPolicy``)
    :param env: The environment to learn from (if registered in Gym, can be str)

    Every other parameter is TRPO's (:class:`sb3_trpo.TRPO`); ``rollout_buffer_class`` must be one of
    sb3-contrib's recurrent buffers (None: chosen from the observation space), and ``batch_size`` is the number of
    steps in each of the critic's minibatches of sequences. With ``data_parallel``, each rank takes its minibatches
    of sequences from its own buffer and the critic's gradients are averaged over the ranks at each step (a minibatch
    of ``world_size * batch_size`` steps), unlike TRPO's, which fits on all ranks' samples gathered once.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpLstmPolicy": MlpLstmPolicy,
        "CnnLstmPolicy": CnnLstmPolicy,
        "MultiInputLstmPolicy": MultiInputLstmPolicy,
    }
