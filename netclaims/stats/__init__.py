"""Effect sizes, confidence intervals, p-values and the claims' verdict rule (docs/statistics.md).

Every effect comes as an :class:`Estimate` (value, 95% CI, n, p-value and how each was
obtained), with intervals valid at the few seeds a claim has (Student t over seeds, Fisher z
for correlations of independent pairs, the jackknife for statistics of the mean curve; their
levels are checked by simulation in ``tests/test_calibration.py``). A :class:`Rule` (the
catalogue's predicted direction, reference value and minimum effect) turns it into a
:class:`Verdict`: PASS when the whole CI lies on the predicted side, the p-value agrees and the
point estimate reaches the minimum effect, FAIL when the whole CI lies on the other side (and
the p-value agrees), INCONCLUSIVE otherwise, ERROR when the numbers are not finite.
"""

from __future__ import annotations

from netclaims.stats.correlations import (
    CORRELATIONS,
    EXACT_PERMUTATIONS,
    FISHER_MIN_N,
    FISHER_SE,
    correlation,
    mean_correlation,
    rank_correlation,
    slope,
)
from netclaims.stats.estimate import (
    CONFIDENCE,
    RESAMPLES,
    Estimate,
    Outcome,
    TTest,
)
from netclaims.stats.means import (
    cohens_d,
    hedges_g,
    mean,
    mean_difference,
)
from netclaims.stats.resampling import (
    granulated_tau,
    jackknife,
    simultaneous,
)
from netclaims.stats.verdicts import (
    Evidence,
    Rule,
    Verdict,
    judge,
    seed_mean,
    seed_paired,
)

__all__ = [
    "CONFIDENCE",
    "CORRELATIONS",
    "EXACT_PERMUTATIONS",
    "FISHER_MIN_N",
    "FISHER_SE",
    "RESAMPLES",
    "Estimate",
    "Evidence",
    "Outcome",
    "Rule",
    "TTest",
    "Verdict",
    "cohens_d",
    "correlation",
    "granulated_tau",
    "hedges_g",
    "jackknife",
    "judge",
    "mean",
    "mean_correlation",
    "mean_difference",
    "rank_correlation",
    "seed_mean",
    "seed_paired",
    "simultaneous",
    "slope",
]
