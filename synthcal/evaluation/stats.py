"""Paired statistics on per-image outcomes: two models scored on the same test images.

Every comparison here is paired: both sides answer for the same images, so the quantities that matter are the
discordant images (right for one, wrong for the other). Three tools:

- a difference of two rates (Δ top-1, Δ agreement) with a percentile bootstrap CI that resamples *images*
  (seeded). Each per-image difference is -1, 0 or +1, so a resample of n images is fully described by how many
  of each it draws: one multinomial draw of n per resample is the same bootstrap distribution as drawing n
  image indices, at O(1) instead of O(n) per resample (10,000 test images: about 1,000 times faster;
  tests/test_stats.py checks it against ``scipy.stats.bootstrap``);
- the exact McNemar test: under "no difference" each discordant image is a fair coin, so the p-value is a
  two-sided binomial test on the discordant counts (``scipy.stats.binomtest``);
- a single rate (agreement with FP32, top-1) with a Wilson score interval.

A difference is called *distinguishable* only when the interval excludes 0 and the exact test rejects "no
difference" at the same level. With many discordant images the two agree; with a handful (say 0 against 4 out of
2,000) the percentile bootstrap is too narrow (most resamples miss the rare images) and the exact test is right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 9999


@dataclass(frozen=True)
class Rate:
    """A proportion of images and its Wilson interval."""

    estimate: float
    ci_low: float
    ci_high: float
    successes: int
    n: int


@dataclass(frozen=True)
class PairedDifference:
    """``mean(a) - mean(b)`` over the same images, its bootstrap interval and the exact McNemar p-value."""

    estimate: float
    ci_low: float
    ci_high: float
    mcnemar_p: float
    a_only: int  # images where a holds and b does not
    b_only: int
    n: int
    distinguishable: bool  # the interval excludes 0 and McNemar rejects "no difference" at 1 - confidence

    def as_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}{key}": value for key, value in asdict(self).items()}


def wilson_rate(successes: int, n: int, confidence: float = CONFIDENCE) -> Rate:
    """Proportion ``successes / n`` with its Wilson score interval (never zero width for n > 0)."""
    if n <= 0:
        raise ValueError("a rate needs at least one image")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, {n}], got {successes}")
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Rate(successes / n, float(interval.low), float(interval.high), int(successes), int(n))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (1.0 when there are none)."""
    discordant = int(a_only) + int(b_only)
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(int(a_only), discordant, 0.5).pvalue)


def paired_difference(a: np.ndarray, b: np.ndarray, *, seed: int = 0, resamples: int = RESAMPLES,
                      confidence: float = CONFIDENCE) -> PairedDifference:
    """Difference of two per-image binary outcomes (``a``, ``b``: bool arrays over the same images).

    The interval is a percentile bootstrap over images of the mean per-image difference (seeded: same inputs
    and seed give the same interval); with no discordant image every resample is 0 and so is the interval.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"paired outcomes need two equal-length 1-D arrays, got {a.shape} and {b.shape}")
    difference = a.astype(np.int8) - b.astype(np.int8)
    n = len(a)
    a_only, b_only = int((difference > 0).sum()), int((difference < 0).sum())
    estimate = (a_only - b_only) / n
    if a_only + b_only == 0:
        low = high = 0.0
    else:
        draws = np.random.default_rng(seed).multinomial(n, [a_only / n, b_only / n, 1 - (a_only + b_only) / n],
                                                        size=resamples)
        means = (draws[:, 0] - draws[:, 1]) / n
        alpha = (1 - confidence) / 2
        low, high = (float(value) for value in np.percentile(means, [100 * alpha, 100 * (1 - alpha)]))
    p_value = mcnemar_exact(a_only, b_only)
    distinguishable = (low > 0 or high < 0) and p_value < 1 - confidence
    return PairedDifference(estimate, low, high, p_value, a_only, b_only, n, distinguishable)


def versus_reference(predictions: np.ndarray, reference: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                     resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> dict:
    """An INT8 model against its FP32 reference on the same test images: the summary.csv statistics.

    ``delta_top1`` (INT8 − FP32) with its bootstrap CI and McNemar p on the images only one of them gets right,
    and agreement (same top-1 class as FP32) with its Wilson interval.
    """
    predictions, reference, labels = (np.asarray(x) for x in (predictions, reference, labels))
    if not predictions.shape == reference.shape == labels.shape:
        raise ValueError(f"predictions {predictions.shape}, reference {reference.shape} and labels {labels.shape} "
                         "must cover the same images")
    delta = paired_difference(predictions == labels, reference == labels, seed=seed, resamples=resamples,
                              confidence=confidence)
    agreement = wilson_rate(int((predictions == reference).sum()), len(labels), confidence)
    return {
        "delta_top1": delta.estimate, "delta_top1_ci_low": delta.ci_low, "delta_top1_ci_high": delta.ci_high,
        "mcnemar_p": delta.mcnemar_p, "int8_only_correct": delta.a_only, "fp32_only_correct": delta.b_only,
        "distinguishable_from_fp32": delta.distinguishable,
        "agreement_with_fp32": agreement.estimate, "agreement_ci_low": agreement.ci_low,
        "agreement_ci_high": agreement.ci_high,
    }
