"""Policies of MaskableRecurrentTRPO: sb3-contrib's recurrent policies with its masked distributions
(:mod:`sb3_trpo.common.maskable.policies`), under RecurrentPPO's names."""

from sb3_trpo.common.maskable.policies import (
    MaskableRecurrentActorCriticCnnPolicy,
    MaskableRecurrentActorCriticPolicy,
    MaskableRecurrentMultiInputActorCriticPolicy,
)

MlpLstmPolicy = MaskableRecurrentActorCriticPolicy
CnnLstmPolicy = MaskableRecurrentActorCriticCnnPolicy
MultiInputLstmPolicy = MaskableRecurrentMultiInputActorCriticPolicy
