from sb3_trpo.trpo_recurrent.policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy
from sb3_trpo.trpo_recurrent.trpo_recurrent import RecurrentTRPO

__all__ = ["CnnLstmPolicy", "MlpLstmPolicy", "MultiInputLstmPolicy", "RecurrentTRPO"]
