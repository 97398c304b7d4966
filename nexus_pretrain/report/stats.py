"""Mean ± std over seeds, 95% confidence intervals of differences, and the reports' one significance rule.

The rule, used by every table and comparison: a difference between two rows is paired over seeds (the
t interval of the per-seed differences) when the runs are paired, i.e. each seed of one row has a run of
the other with the same seed and the same batches; Welch's interval of the difference of means is used
only for unpaired runs. A gain is bolded when it beats the paper's threshold (Sec. 4.1: 0.01 in loss, 2
points in accuracy) and its interval excludes 0. A pretraining-loss gap above 0.01 is "not the same
pretraining loss" (the paper's Sec. 4.1/4.3 margin), a flag, never an improvement.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

LOSS_THRESHOLD = 0.01
"""Paper Sec. 4.1: a non-trivial loss gap, and the "same pretraining loss" margin (Sec. 4.3: Δ < 0.01)."""
ACC_THRESHOLD = 2.0
"""Paper Sec. 4.1: a non-trivial accuracy gap, in points."""

SAME = "same pretraining loss"
NOT_SAME = "not the same pretraining loss"
INCONCLUSIVE = f"inconclusive (95% CI exceeds ±{LOSS_THRESHOLD})"

def _t_cdf_above_zero(x: float, df: float, steps: int = 1000) -> float:
    """P(0 < T < x) for Student's t, by Simpson's rule on its density (smooth, so 1000 steps is plenty)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(t: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))

    h = x / steps
    total = pdf(0.0) + pdf(x) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return total * h / 3


@functools.lru_cache(maxsize=4096)
def t975(df: float) -> float:
    """The 0.975 quantile of Student's t with ``df`` (possibly fractional, as Welch's) degrees of freedom.

    Computed without scipy: bisection on the numerically integrated density (error < 1e-6).
    """
    if df < 1:
        raise ValueError(f"t975: degrees of freedom must be >= 1, got {df}")
    lo, hi = 1.9, 12.8  # t975 lies in [1.96, 12.71] for df >= 1
    for _ in range(40):
        mid = (lo + hi) / 2
        if _t_cdf_above_zero(mid, df) < 0.475:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of a cell's values."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Optional[Summary]:
    """Summary of the finite values (None when there are none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return Summary(mean, std, len(vals))


def mean_ci(s: Optional[Summary]) -> Optional[Tuple[float, float]]:
    """95% t confidence interval of the mean (e.g. of per-seed paired differences); None below two values."""
    if s is None or s.n < 2:
        return None
    half = t975(s.n - 1) * s.std / math.sqrt(s.n)
    return (s.mean - half, s.mean + half)


def welch_ci(a: Summary, b: Summary) -> Optional[Tuple[float, float]]:
    """95% CI of mean(a) - mean(b) (Welch's t); None unless both have at least two values."""
    if a.n < 2 or b.n < 2:
        return None
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    diff = a.mean - b.mean
    se2 = va + vb
    if se2 == 0:
        return (diff, diff)
    df = se2 ** 2 / ((va ** 2) / (a.n - 1) + (vb ** 2) / (b.n - 1))
    half = t975(df) * math.sqrt(se2)
    return (diff - half, diff + half)


@dataclass(frozen=True)
class Difference:
    """A difference of two rows (a - b, or a gain) with its 95% CI, how it was computed and over how many runs."""

    mean: float
    ci: Optional[Tuple[float, float]]
    n: int
    paired: bool

    @property
    def method(self) -> str:
        if self.ci is None:
            return "one run each" if self.n <= 1 else "no interval"
        return f"paired t over {self.n} seeds" if self.paired else "Welch (unpaired)"


def paired_difference(diffs: Sequence[float]) -> Optional[Difference]:
    """Mean of per-seed differences (a_s - b_s of runs paired by seed and batches) and its t interval."""
    s = summarize(diffs)
    return None if s is None else Difference(s.mean, mean_ci(s), s.n, True)


def unpaired_difference(a: Sequence[float], b: Sequence[float]) -> Optional[Difference]:
    """mean(a) - mean(b) with Welch's interval (runs that do not share seeds and batches)."""
    sa, sb = summarize(a), summarize(b)
    if sa is None or sb is None:
        return None
    return Difference(sa.mean - sb.mean, welch_ci(sa, sb), min(sa.n, sb.n), False)


def significant_gain(gain: Optional[Difference], threshold: float) -> bool:
    """Bold: the gain exceeds the paper's threshold and its 95% CI (if any) excludes 0.

    Rounded so that e.g. 2.00 - 1.99 counts as exactly 0.01 (not bold), as in the printed tables.
    """
    return gain is not None and round(gain.mean, 9) > threshold and (gain.ci is None or round(gain.ci[0], 9) > 0)


def pretraining_loss_verdict(gap: Difference) -> str:
    """SAME when the pretraining-loss gap is at most 0.01 (and so is its 95% CI, when there is one), NOT_SAME
    when the gap is larger, INCONCLUSIVE when the gap is within 0.01 but its CI is not."""
    if abs(round(gap.mean, 9)) > LOSS_THRESHOLD:
        return NOT_SAME
    if gap.ci is None or (-LOSS_THRESHOLD <= round(gap.ci[0], 9) and round(gap.ci[1], 9) <= LOSS_THRESHOLD):
        return SAME
    return INCONCLUSIVE


def matched_loss_verdict(diff: Optional[Difference], margin: float) -> str:
    """The iso-loss experiment's rule for a candidate - baseline loss difference at matched pretraining loss:
    "candidate lower" when the 95% CI lies below 0, "candidate higher" when above, "no difference beyond
    ±margin" when it lies within [-margin, margin], otherwise "inconclusive"."""
    if diff is None or diff.ci is None:
        return "inconclusive (no interval)"
    low, high = (round(v, 9) for v in diff.ci)
    if high < 0:
        return "candidate lower"
    if low > 0:
        return "candidate higher"
    if -margin <= low and high <= margin:
        return f"no difference beyond ±{margin}"
    return "inconclusive"
