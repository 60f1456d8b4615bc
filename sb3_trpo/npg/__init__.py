from sb3_trpo.npg.npg import NPG
from sb3_trpo.npg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["NPG", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
