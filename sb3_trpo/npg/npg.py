import math
from typing import ClassVar

from sb3_trpo.common.natural_gradient import LineSearchResult
from sb3_trpo.common.on_policy_ng import NaturalGradientAlgorithm, StepEvaluator


class NPG(NaturalGradientAlgorithm):
    """
    Natural Policy Gradient (NPG), with the trust-region step length

    Paper: https://papers.nips.cc/paper/2073-a-natural-policy-gradient (Kakade, 2001); the step length from the TRPO
    paper, https://arxiv.org/abs/1502.05477 (Appendix C), as in Rajeswaran et al., 2017, https://arxiv.org/abs/1703.02660
    Code: an independent implementation; Tianshou's NPG (https://github.com/thu-ml/tianshou) and OpenAI Spinning Up
    were read as references.

    TRPO without the line search (``docs/design.md``, "The update, step by step"): the full step, which reaches
    ``KL = target_kl`` at the quadratic model of the KL, taken unless its objective or KL is not finite.

    The constructor is TRPO's (:class:`sb3_trpo.TRPO`, where each parameter is documented) without
    ``line_search_shrinking_factor`` and ``line_search_max_iter``; ``target_kl`` sets the step instead of bounding it:

    :param target_kl: The step size as a KL ``delta``, reached by the full step at the quadratic model (the KL reached
        is logged, not bounded); > 0, typically 0.005-0.05, or a schedule, or ``"lin_<value>"``
    """

    _argument_hints: ClassVar[dict[str, str]] = {
        name: f"NPG has no line search, so no `{name}`: it takes the full step (use TRPO for a backtracking line search)."
        for name in ("line_search_shrinking_factor", "line_search_max_iter")
    }

    def _policy_step(self, evaluate: StepEvaluator, old_objective: float, radius: float) -> LineSearchResult:
        """The full step, refused only when its objective or KL is not finite (``radius`` is already in its length)."""
        objective, kl = evaluate(1.0)
        if math.isfinite(objective) and math.isfinite(kl):
            return LineSearchResult(True, 1.0, 0, kl, objective)
        return LineSearchResult(False, 0.0, 0, 0.0, old_objective)
