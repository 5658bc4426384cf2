"""The claims' rule and verdicts: :class:`Rule` (direction, reference, minimum effect, further
conditions), :class:`Evidence`, :class:`Verdict` and :func:`judge`; per-seed helpers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np

from netclaims._checks import ArrayLike
from netclaims.stats.estimate import CONFIDENCE, Estimate, Outcome
from netclaims.stats.means import mean, mean_difference


def _fmt(x: float) -> str:
    return f"{x:.3g}"


@dataclass(frozen=True)
class Rule:
    """A pre-registered decision rule from the catalogue, declared once in a claim's
    ``@claim(..., rule=...)``.

    ``direction="greater"``: the effect is predicted above ``reference``; ``"less"``: below;
    ``"within"``: inside ``band``. ``min_effect``: the point estimate must reach it (``>=`` for
    greater, ``<=`` for less). ``inclusive``: the CI may touch ``reference`` (rows written
    "≥" or "≤" with a bound). ``also``: further conditions the catalogue row names (e.g.
    "hit rate > chance"); the claim reports whether each held in :attr:`Evidence.checks`, and
    one that did not hold turns a PASS into INCONCLUSIVE.
    """

    direction: Literal["greater", "less", "within"]
    reference: float = 0.0
    min_effect: float | None = None
    band: tuple[float, float] | None = None
    inclusive: bool = False
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.direction not in ("greater", "less", "within"):
            raise ValueError(f"direction must be greater, less or within, got {self.direction!r}")
        if self.direction == "within" and (self.band is None or self.band[0] > self.band[1]):
            raise ValueError("a 'within' rule needs band=(low, high) with low <= high")
        if isinstance(self.also, str):
            raise TypeError(f"Rule(also=...) takes a tuple of conditions, got the string "
                            f"{self.also!r}; write also=({self.also!r},)")

    def _band(self) -> tuple[float, float]:
        """The band of a 'within' rule (checked when the rule is made)."""
        if self.band is None:
            raise ValueError("a 'within' rule needs band=(low, high)")
        return self.band

    def describe(self) -> str:
        if self.direction == "within":
            low, high = self._band()
            return f"CI within [{_fmt(low)}, {_fmt(high)}]"
        op = {"greater": ">=" if self.inclusive else ">",
              "less": "<=" if self.inclusive else "<"}[self.direction]
        text = f"CI {op} {_fmt(self.reference)}"
        if self.min_effect is not None:
            bound = ">=" if self.direction == "greater" else "<="
            text += f" and estimate {bound} {_fmt(self.min_effect)}"
        return "; ".join((text, *self.also))

    def judge(self, estimate: Estimate) -> Outcome:
        """The outcome of the rule on the estimate alone (without :attr:`also`)."""
        return self.decide(estimate)[0]

    def decide(self, estimate: Estimate) -> tuple[Outcome, str]:
        """The outcome on the estimate alone, and why it is not the interval's plain reading
        (empty when it is). A zero-width interval over several values (no spread) decides
        nothing; when the p-value tests the rule's reference, PASS and FAIL also need it
        below 0.05 (the interval and the test must agree)."""
        if not estimate.finite or estimate.ci_low > estimate.ci_high:
            reason = ("non-finite estimate or CI" if not estimate.finite
                      else "the CI's lower bound exceeds its upper bound")
            return Outcome.ERROR, reason
        outcome = self._read(estimate)
        if outcome is Outcome.INCONCLUSIVE:
            return outcome, ""
        if estimate.ci_low == estimate.ci_high and estimate.n > 1:
            return Outcome.INCONCLUSIVE, ("every value is the same: the interval has no "
                                          "width, so the spread is unknown")
        tests_reference = self.direction != "within" and estimate.null == self.reference
        p = estimate.p_value
        if tests_reference and p is not None and p >= 1 - CONFIDENCE:
            return Outcome.INCONCLUSIVE, f"the interval decides but p = {_fmt(p)} does not"
        return outcome, ""

    def _read(self, estimate: Estimate) -> Outcome:
        lo, hi, v = estimate.ci_low, estimate.ci_high, estimate.value
        if self.direction == "within":
            a, b = self._band()
            if a <= lo and hi <= b:
                return Outcome.PASS
            return Outcome.FAIL if (hi < a or lo > b) else Outcome.INCONCLUSIVE
        ref = self.reference
        if self.direction == "greater":
            on_side = lo >= ref if self.inclusive else lo > ref
            other_side = hi < ref
            reaches = self.min_effect is None or v >= self.min_effect
        else:
            on_side = hi <= ref if self.inclusive else hi < ref
            other_side = lo > ref
            reaches = self.min_effect is None or v <= self.min_effect
        if on_side and reaches:
            return Outcome.PASS
        return Outcome.FAIL if other_side else Outcome.INCONCLUSIVE


@dataclass(frozen=True)
class Evidence:
    """What a claim measured, for the plugin to judge with the claim's rule: the
    :class:`Estimate` of its statistic, the data behind it (``details``, kept in the report)
    and whether each further condition its rule names (:attr:`Rule.also`) held."""

    estimate: Estimate
    details: dict = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The judged result of one claim: numbers, the rule that produced the outcome, and a
    one-line message."""

    claim_id: str
    finding: str
    statistic: str
    estimate: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float | None
    rule: str
    outcome: Outcome
    method: str = ""
    reason: str = ""
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    def summary(self) -> str:
        """``SD-1 finding: rho=-0.83 [-0.95,-0.61] n=12, needs CI < 0 ... -> PASS``."""
        head = f"{self.claim_id} {self.finding}".strip()
        if not math.isfinite(self.estimate):
            return f"{head}: {self.reason or 'no finite estimate'} -> {self.outcome}"
        numbers = (f"{self.statistic}={_fmt(self.estimate)} "
                   f"[{_fmt(self.ci_low)},{_fmt(self.ci_high)}] n={self.n}")
        if self.p_value is not None:
            numbers += f" p={_fmt(self.p_value)}"
        tail = f" ({self.reason})" if self.reason else ""
        return f"{head}: {numbers}, needs {self.rule} -> {self.outcome}{tail}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["outcome"] = str(self.outcome)
        return out


def judge(claim_id: str, evidence: Evidence | Estimate, rule: Rule, *,
          finding: str = "") -> Verdict:
    """Apply ``rule`` to ``evidence`` (an :class:`Estimate` is evidence without details).
    Non-finite numbers give ERROR with the reason; a condition of :attr:`Rule.also` that
    did not hold turns a PASS into INCONCLUSIVE."""
    if isinstance(evidence, Estimate):
        evidence = Evidence(evidence)
    if rule.direction != "within":
        evidence = replace(evidence, estimate=evidence.estimate.against(rule.reference))
    missing = [c for c in rule.also if c not in evidence.checks]
    unknown = [c for c in evidence.checks if c not in rule.also]
    if missing or unknown:
        raise ValueError(f"claim {claim_id}: its rule names the conditions {list(rule.also)} "
                         f"and its evidence reports {list(evidence.checks)}; they must match")
    estimate = evidence.estimate
    outcome, reason = rule.decide(estimate)
    unmet = [c for c in rule.also if not evidence.checks[c]]
    if outcome is Outcome.PASS and unmet:
        outcome, reason = Outcome.INCONCLUSIVE, "not met: " + "; ".join(unmet)
    test = estimate.test
    if outcome is Outcome.INCONCLUSIVE and not reason and test is not None \
            and test.df == estimate.n - 1 and rule.direction != "within":
        needed = test.units_to_decide(rule.reference)
        reason = (f"at this effect and spread about {needed} seeds would decide it"
                  if needed and needed > estimate.n else reason)
    return Verdict(claim_id=claim_id, finding=finding, statistic=estimate.statistic,
                   estimate=estimate.value, ci_low=estimate.ci_low, ci_high=estimate.ci_high,
                   n=estimate.n, p_value=estimate.p_value, rule=rule.describe(),
                   outcome=outcome, method=estimate.method, reason=reason,
                   details=dict(evidence.details))


def seed_mean(values: ArrayLike, *, statistic: str, details: dict | None = None) -> Evidence:
    """Evidence from per-seed effects: their mean (:func:`mean`: Student-t interval over
    the seeds), named ``statistic``, with the per-seed values kept in the details."""
    per_seed = np.asarray(values, dtype=float).tolist()
    return Evidence(replace(mean(per_seed), statistic=statistic),
                    {"per_seed": per_seed, **(details or {})})


def seed_paired(a: ArrayLike, b: ArrayLike, *, statistic: str,
                details: dict | None = None) -> Evidence:
    """Evidence from per-seed values of two conditions: the paired mean difference
    ``a − b`` (:func:`mean_difference` with ``paired=True``: paired t), named
    ``statistic``, with both sides kept in the details."""
    x, y = np.asarray(a, dtype=float).tolist(), np.asarray(b, dtype=float).tolist()
    est = replace(mean_difference(x, y, paired=True), statistic=statistic)
    return Evidence(est, {"a": x, "b": y, **(details or {})})
