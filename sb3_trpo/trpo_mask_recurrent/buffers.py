"""Rollout buffers of MaskableRecurrentTRPO: sb3-contrib's recurrent buffers that also store the action masks
(:mod:`sb3_trpo.common.maskable.buffers`)."""

from sb3_trpo.common.maskable.buffers import MaskableRecurrentDictRolloutBuffer, MaskableRecurrentRolloutBuffer

__all__ = ["MaskableRecurrentDictRolloutBuffer", "MaskableRecurrentRolloutBuffer"]
