"""Paired statistics: known answers, the McNemar/bootstrap verdicts agree, intervals are sane and seeded."""

from __future__ import annotations

from math import comb, sqrt

import numpy as np
import pytest
from scipy import stats as scipy_stats

from synthcal.evaluation.stats import mcnemar_exact, paired_difference, versus_reference, wilson_rate


def _pair(n: int, a_only: int, b_only: int, both: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-image outcomes of two models with exactly these discordant and concordant counts, shuffled."""
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:a_only] = True
    b[a_only:a_only + b_only] = True
    a[a_only + b_only:a_only + b_only + both] = b[a_only + b_only:a_only + b_only + both] = True
    order = np.random.default_rng(seed).permutation(n)
    return a[order], b[order]


def test_mcnemar_exact_is_the_two_sided_binomial_on_discordant_pairs():
    # 2 vs 10 discordant images: p = 2 · P(X ≤ 2), X ~ Bin(12, 1/2) = 2 · 79 / 4096
    assert mcnemar_exact(2, 10) == pytest.approx(2 * (comb(12, 0) + comb(12, 1) + comb(12, 2)) / 2**12)
    assert mcnemar_exact(10, 2) == mcnemar_exact(2, 10)
    assert mcnemar_exact(7, 7) == 1.0
    assert mcnemar_exact(0, 0) == 1.0


def test_wilson_interval_matches_the_formula():
    successes, n, z = 970, 1000, scipy_stats.norm.ppf(0.975)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    rate = wilson_rate(successes, n)
    assert rate.ci_low == pytest.approx(centre - half, abs=1e-9)
    assert rate.ci_high == pytest.approx(centre + half, abs=1e-9)
    for k in (0, 1, 500, 999, 1000):  # contains its estimate, never zero width, stays in [0, 1]
        edge = wilson_rate(k, 1000)
        assert 0 <= edge.ci_low <= edge.estimate <= edge.ci_high <= 1 and edge.ci_high > edge.ci_low
    with pytest.raises(ValueError):
        wilson_rate(3, 0)


# (a_only, b_only) on 1,000 images with a known answer: clearly different, or clearly the same
KNOWN = [((60, 10), True), ((10, 60), True), ((35, 5), True), ((20, 20), False), ((12, 9), False), ((3, 4), False),
         ((25, 15), False)]


@pytest.mark.parametrize(("counts", "differs"), KNOWN)
def test_mcnemar_and_bootstrap_agree_on_which_pairs_differ(counts, differs):
    a_only, b_only = counts
    a, b = _pair(1000, a_only, b_only, both=850)
    result = paired_difference(a, b, seed=0)
    assert result.estimate == pytest.approx((a_only - b_only) / 1000)
    assert (result.a_only, result.b_only, result.n) == (a_only, b_only, 1000)
    assert result.ci_low <= result.estimate <= result.ci_high and result.ci_high > result.ci_low
    assert result.distinguishable is differs  # the bootstrap interval excludes 0 …
    assert (result.mcnemar_p < 0.05) is differs  # … exactly when McNemar rejects "no difference"


def test_a_handful_of_discordant_images_is_not_a_difference():
    # 0 against 4 of 2,000: most resamples miss all four, so the percentile interval excludes 0 — but under
    # "no difference" four one-sided coins happen with p = 2 / 16; the exact test decides
    a, b = _pair(2000, 0, 4, both=1900)
    result = paired_difference(a, b, seed=0)
    assert result.ci_high < 0 and result.mcnemar_p == pytest.approx(0.125)
    assert not result.distinguishable


def test_bootstrap_interval_is_seeded_and_has_the_expected_width():
    a, b = _pair(1000, 30, 10, both=900)
    first, again = (paired_difference(a, b, seed=0) for _ in range(2))
    others = {(r.ci_low, r.ci_high) for r in (paired_difference(a, b, seed=s) for s in range(1, 6))}
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert others - {(first.ci_low, first.ci_high)}  # the seed matters (bounds move in steps of 1/n)
    # normal approximation of the paired difference: sd = sqrt((b + c)/n - Δ²) / sqrt(n)
    sd = sqrt(40 / 1000 - 0.02**2) / sqrt(1000)
    assert first.ci_high - first.ci_low == pytest.approx(2 * 1.96 * sd, rel=0.15)


def test_no_discordant_images_gives_a_zero_difference_and_p_one():
    a, b = _pair(200, 0, 0, both=150)
    result = paired_difference(a, b)
    assert (result.estimate, result.ci_low, result.ci_high, result.mcnemar_p) == (0.0, 0.0, 0.0, 1.0)
    assert not result.distinguishable


def test_versus_reference_counts_flips_against_fp32():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 2000)
    fp32 = labels.copy()
    fp32[:200] = (labels[:200] + 1) % 10  # FP32 wrong on 200 images
    int8 = fp32.copy()
    int8[:30] = labels[:30]  # INT8 fixes 30 of them
    int8[500:580] = (labels[500:580] + 2) % 10  # and breaks 80 others
    row = versus_reference(int8, fp32, labels, seed=0)
    assert (row["int8_only_correct"], row["fp32_only_correct"]) == (30, 80)
    assert row["delta_top1"] == pytest.approx(-50 / 2000)
    assert row["agreement_with_fp32"] == pytest.approx(1 - 110 / 2000)
    assert row["delta_top1_ci_low"] < row["delta_top1"] < row["delta_top1_ci_high"] < 0
    assert row["distinguishable_from_fp32"] and row["mcnemar_p"] < 1e-4
    assert row["agreement_ci_low"] < row["agreement_with_fp32"] < row["agreement_ci_high"]
    with pytest.raises(ValueError, match="same images"):
        versus_reference(int8[:-1], fp32, labels)


def test_count_bootstrap_matches_scipys_image_bootstrap():
    a, b = _pair(2000, 45, 20, both=1800)
    ours = paired_difference(a, b, resamples=20000)
    difference = a.astype(np.int8) - b.astype(np.int8)
    theirs = scipy_stats.bootstrap((difference,), np.mean, n_resamples=20000, method="percentile",
                             rng=np.random.default_rng(1)).confidence_interval
    assert ours.ci_low == pytest.approx(theirs.low, abs=0.0015)
    assert ours.ci_high == pytest.approx(theirs.high, abs=0.0015)


def test_bad_inputs_are_refused_with_their_reason():
    with pytest.raises(ValueError, match="^a rate needs at least one image$"):
        wilson_rate(0, 0)
    with pytest.raises(ValueError, match=r"^successes must lie in \[0, 10\], got 11$"):
        wilson_rate(11, 10)
    with pytest.raises(ValueError, match=r"^successes must lie in \[0, 10\], got -1$"):
        wilson_rate(-1, 10)
    message = r"^paired outcomes need two equal-length 1-D arrays, got \(3,\) and \(4,\)$"
    with pytest.raises(ValueError, match=message):
        paired_difference(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match=r"got \(2, 2\) and \(2, 2\)$"):
        paired_difference(np.ones((2, 2), bool), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match=r"got \(0,\) and \(0,\)$"):
        paired_difference(np.ones(0, bool), np.ones(0, bool))
    with pytest.raises(ValueError, match=r"labels \(1, 3\) must cover the same images$"):
        versus_reference(np.zeros(3), np.zeros(3), np.zeros(3)[None])


def test_one_image_and_other_confidence_levels():
    rate = wilson_rate(1, 1)
    assert (rate.estimate, rate.successes, rate.n) == (1.0, 1, 1) and isinstance(rate.successes, int)
    assert 0 < rate.ci_low < 1 == rate.ci_high
    # the Wilson formula at 99 %
    successes, n, z = 970, 1000, scipy_stats.norm.ppf(0.995)
    p = successes / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * sqrt(
        p * (1 - p) / n + z * z / (4 * n * n))
    wide = wilson_rate(successes, n, confidence=0.99)
    assert (wide.ci_low, wide.ci_high) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_truthy_outcomes_count_as_bool():
    """Outcomes are per-image booleans: any non-zero value is "right" (2 and 1 are both right, no discordance)."""
    result = paired_difference(np.array([2, 0, 1, 3]), np.array([1, 1, 0, 5]))
    assert (result.a_only, result.b_only, result.estimate) == (1, 1, 0.0)
    result = paired_difference(np.array([1, 1, 0, 1]), np.array([2, 0, 1, 4]))
    assert (result.a_only, result.b_only) == (1, 1)


def test_the_interval_is_the_percentiles_of_the_seeded_count_bootstrap():
    """A few resamples, so every percentile is interpolated: the bounds are the (1 ± confidence) / 2 percentiles
    of the means of multinomial counts drawn by ``default_rng(seed)`` (seed 0 by default)."""
    a, b = _pair(50, 6, 2, both=30)
    for seed, resamples, confidence in ((0, 3, 0.95), (4, 7, 0.9), (9, 5, 0.5)):
        draws = np.random.default_rng(seed).multinomial(50, [6 / 50, 2 / 50, 42 / 50], size=resamples)
        alpha = (1 - confidence) / 2
        expected = np.percentile((draws[:, 0] - draws[:, 1]) / 50, [100 * alpha, 100 * (1 - alpha)])
        result = paired_difference(a, b, seed=seed, resamples=resamples, confidence=confidence)
        assert (result.ci_low, result.ci_high) == pytest.approx(tuple(expected), abs=1e-15)
    assert paired_difference(a, b, resamples=7) == paired_difference(a, b, seed=0, resamples=7)
    one = paired_difference(*_pair(10, 1, 0, both=5), resamples=99)  # one discordant image is resampled too
    assert one.ci_low == 0.0 < one.ci_high


def test_distinguishable_needs_p_strictly_below_the_level():
    # 0 against 2 of 4: every resample is below 0, but p = 0.5 is not below 1 - 0.5
    result = paired_difference(*_pair(4, 0, 2, both=1), confidence=0.5)
    assert result.ci_high < 0 and result.mcnemar_p == 0.5 and not result.distinguishable


def test_versus_reference_passes_its_settings_on():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 10, 300)
    fp32 = np.where(rng.random(300) < 0.9, labels, (labels + 1) % 10)
    int8 = np.where(rng.random(300) < 0.9, fp32, (fp32 + 2) % 10)
    for settings in ({"seed": 3, "resamples": 9, "confidence": 0.8}, {"resamples": 9}):
        row = versus_reference(int8, fp32, labels, **settings)
        delta = paired_difference(int8 == labels, fp32 == labels, **({"seed": 0, "confidence": 0.95} | settings))
        agreement = wilson_rate(int((int8 == fp32).sum()), 300, settings.get("confidence", 0.95))
        assert (row["delta_top1_ci_low"], row["delta_top1_ci_high"]) == (delta.ci_low, delta.ci_high)
        assert (row["agreement_ci_low"], row["agreement_ci_high"]) == (agreement.ci_low, agreement.ci_high)


def test_paired_difference_as_a_prefixed_row():
    row = paired_difference(*_pair(10, 2, 0, both=5), resamples=9).as_dict("top1_")
    assert row["top1_a_only"] == 2 and row["top1_n"] == 10 and row["top1_estimate"] == 0.2 and len(row) == 8
    assert set(paired_difference(*_pair(10, 2, 0, both=5), resamples=9).as_dict()) >= {"estimate", "mcnemar_p"}
