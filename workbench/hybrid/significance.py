"""Paired significance of per-query differences between two methods, and win/tie/loss counts.

Both tests pair the two methods' values of one metric on the same queries: a two-sided paired
randomization (sign-flip) test, the test Smucker, Allan & Carterette (CIKM 2007, "A Comparison of
Statistical Significance Tests for Information Retrieval Evaluation") recommend, and the paired t-test.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from workbench.errors import WorkbenchError

TIE_TOLERANCE = 1e-9  # per-query differences this small count as ties (float noise from pytrec_eval)


@dataclass(frozen=True)
class Comparison:
    """Method ``a`` against baseline ``b`` on one metric."""

    mean_a: float
    mean_b: float
    delta: float
    p_randomization: float
    p_ttest: float
    wins: int
    ties: int
    losses: int

    def to_dict(self) -> dict:
        return asdict(self)


def win_tie_loss(a: np.ndarray, b: np.ndarray, tol: float = TIE_TOLERANCE) -> tuple[int, int, int]:
    """Queries where ``a`` beats, ties or loses to ``b``."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return int((d > tol).sum()), int((np.abs(d) <= tol).sum()), int((d < -tol).sum())


def compare(a: np.ndarray, b: np.ndarray, n_resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Paired randomization test (``scipy.stats.permutation_test``, ``permutation_type="samples"``:
    each query's pair is swapped or not, statistic the mean difference) and ``scipy.stats.ttest_rel``."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise WorkbenchError(f"paired test needs two equal 1-d arrays, got shapes {a.shape} and {b.shape}")
    if len(a) < 2:
        raise WorkbenchError(f"paired test needs at least 2 queries, got {len(a)}")
    d = a - b
    if np.all(np.abs(d) <= TIE_TOLERANCE):
        p_rand = p_t = 1.0  # identical per-query values: no evidence of a difference (t-test would be NaN)
    else:
        res = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), vectorized=True,
                                     permutation_type="samples", n_resamples=n_resamples,
                                     alternative="two-sided", rng=np.random.default_rng(seed))
        p_rand = float(res.pvalue)
        with warnings.catch_warnings():  # near-constant differences warn about precision; p is still right
            warnings.simplefilter("ignore", RuntimeWarning)
            p_t = float(stats.ttest_rel(a, b).pvalue)
        if not np.isfinite(p_t):  # constant non-zero difference: the t statistic is infinite
            p_t = 0.0
    w, t, l = win_tie_loss(a, b)
    return Comparison(float(a.mean()), float(b.mean()), float(d.mean()), p_rand, p_t, w, t, l)
