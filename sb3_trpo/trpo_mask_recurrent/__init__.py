from sb3_trpo.trpo_mask_recurrent.policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy
from sb3_trpo.trpo_mask_recurrent.trpo_mask_recurrent import MaskableRecurrentTRPO

__all__ = ["CnnLstmPolicy", "MaskableRecurrentTRPO", "MlpLstmPolicy", "MultiInputLstmPolicy"]
