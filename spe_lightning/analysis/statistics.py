"""Telling an effect from noise: per-group confidence intervals, paired comparisons against a baseline over
the seeds both arms ran, and a correction for the many comparisons a grid makes.

The tests and intervals are scipy.stats' (t intervals, the paired t-test, the Wilcoxon signed-rank test);
only Holm's step-down adjustment, which scipy does not provide, is written here. The verdict is the paired
t-test's after Holm's correction across the grid's comparisons: ``better`` or ``worse`` at the 5 % family-wise
level, else ``no detectable difference``; with fewer than :data:`MIN_PAIRS` seed pairs there is none: ``n too
small``. The signed-rank p-value is printed beside it as the check that assumes no normality (with few
seeds it cannot reach 5 %: its smallest two-sided p is 2 / 2**n, 0.0625 for 5 pairs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

LEVEL = 0.95
"""Confidence level of every interval; tests use 1 - LEVEL."""
MIN_PAIRS = 2
"""Fewest seed pairs for a paired test (one pair has no spread)."""
BETTER, WORSE, NO_DIFFERENCE, TOO_FEW = "better", "worse", "no detectable difference", "n too small"


@dataclass(frozen=True)
class GroupSummary:
    """n, mean, sample standard deviation and the t confidence interval of the mean."""

    n: int
    mean: float
    std: float
    low: float
    high: float


def summarize_group(values: Sequence[float], level: float = LEVEL) -> GroupSummary:
    """Mean with its t interval; NaN where ``values`` cannot give one (no values; one has no spread)."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return GroupSummary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if n == 1:
        return GroupSummary(1, mean, math.nan, math.nan, math.nan)
    std = float(data.std(ddof=1))
    if std == 0.0:
        return GroupSummary(n, mean, 0.0, mean, mean)
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=std / math.sqrt(n))
    return GroupSummary(n, mean, std, float(low), float(high))


@dataclass(frozen=True)
class Comparison:
    """An arm against the baseline over the seeds both ran: the paired difference (arm - baseline), its
    interval, the two tests' p-values, the Holm-adjusted p-value and the verdict."""

    pairs: int
    difference: float
    low: float
    high: float
    p_t: float
    p_wilcoxon: float
    p_holm: float = math.nan
    verdict: str = TOO_FEW


def compare_paired(arm: Mapping[object, float], baseline: Mapping[object, float]) -> Comparison:
    """``arm`` and ``baseline`` are results by seed; only seeds both ran are paired."""
    seeds = [seed for seed in arm if seed in baseline]
    differences = np.array([arm[seed] - baseline[seed] for seed in seeds], dtype=float)
    summary = summarize_group(differences)
    if len(seeds) < MIN_PAIRS:
        return Comparison(len(seeds), summary.mean, math.nan, math.nan, math.nan, math.nan)
    if not differences.any():  # identical results: nothing to test
        return Comparison(len(seeds), 0.0, 0.0, 0.0, 1.0, 1.0)
    if summary.std == 0.0:  # the same non-zero difference on every seed: as certain as a t-test gets
        p_t = 0.0
    else:
        p_t = float(stats.ttest_rel([arm[s] for s in seeds], [baseline[s] for s in seeds]).pvalue)
    p_wilcoxon = float(stats.wilcoxon(differences).pvalue)
    return Comparison(len(seeds), summary.mean, summary.low, summary.high, p_t, p_wilcoxon)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate); NaN stays NaN and is not counted."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted


def judge(comparisons: Sequence[Comparison], level: float = LEVEL) -> list[Comparison]:
    """The comparisons of one family (a grid against its baseline), Holm-adjusted and with verdicts."""
    adjusted = holm([c.p_t for c in comparisons])
    judged = []
    for comparison, p_holm in zip(comparisons, adjusted, strict=True):
        if comparison.pairs < MIN_PAIRS:
            verdict = TOO_FEW
        elif p_holm <= 1.0 - level:
            verdict = BETTER if comparison.difference > 0 else WORSE
        else:
            verdict = NO_DIFFERENCE
        judged.append(replace(comparison, p_holm=p_holm, verdict=verdict))
    return judged
