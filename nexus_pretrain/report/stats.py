"""Mean ± std over seeds and the Welch 95% confidence interval of a difference of means."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

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
