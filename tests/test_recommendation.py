"""The recommendation on a small study held in memory (no page build): which cells compete, the paired comparisons,
the verdicts and the sentences that state them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthcal.evaluation.stats import paired_difference, versus_reference
from synthcal.report.recommendation import answer, compare_calibrations, recommend, verdict

N = 400
# (calibration, method) -> (kind, images whose FP32 class INT8 changes, float layers, speed-up)
CELLS = {
    ("cifar10", "default"): ("cifar10", 10, 0, 2.5),
    ("fractal", "default"): ("fractal", 12, 0, 2.3),
    ("noise", "default"): ("noise", 60, 0, 2.45),
    ("fractal2", "default"): ("fractal", 13, 0, 2.2),  # as good as fractal: listed beside it
    ("own", "aa"): ("folder", 4, 2, 2.4),  # a real set of another kind: no cifar10 cell of this method
    ("fractal", "aa"): ("fractal", 2, 21, 1.1),  # the best agreement, but mostly float: slow
    ("noise", "aa"): ("noise", 30, 3, 2.35),
}
KINDS = {calibration: kind for (calibration, _), (kind, *_) in CELLS.items()}
OPTIONS = {"seed": 3, "resamples": 60, "confidence": 0.9}


def _study(cells=CELLS, test_set="test"):
    labels = np.random.default_rng(0).integers(0, 10, N)
    fp32 = labels.copy()
    fp32[:40] = (labels[:40] + 1) % 10  # FP32 wrong on 40 images
    outputs, rows = {}, []
    for index, ((calibration, method), (_, flips, float_layers, speedup)) in enumerate(cells.items()):
        ours = fp32.copy()
        chosen = (np.arange(flips) * 7 + index) % N
        ours[chosen] = (ours[chosen] + 3) % 10
        outputs[(calibration, method)] = ours
        stats = versus_reference(ours, fp32, labels, resamples=60)
        rows.append({"precision": "int8", "test_set": test_set, "model": "m", "method": method,
                     "calibration": calibration, "speedup": speedup, "float_layers": float_layers,
                     "num_images": N, **{key: stats[key] for key in (
                         "agreement_with_fp32", "agreement_ci_low", "agreement_ci_high", "delta_top1",
                         "delta_top1_ci_low", "delta_top1_ci_high")}})
    rows.append({"precision": "fp32", "test_set": test_set, "model": "m", "method": "", "calibration": "",
                 "speedup": 1.0, "float_layers": 0, "num_images": N})

    def lookup(test_set_name, model, calibration, method):
        assert (test_set_name, model) == (test_set, "m")
        return outputs[(calibration, method)], fp32, labels

    return pd.DataFrame(rows), lookup, outputs, fp32, labels


def test_each_cell_is_compared_with_the_reference_of_its_method():
    summary, lookup, outputs, fp32, labels = _study()
    comparisons = compare_calibrations(summary, lookup, "cifar10", **OPTIONS)
    # only the default method has a cifar10 cell; the reference itself is not compared with itself
    assert list(zip(comparisons.calibration, comparisons.method, strict=True)) == [
        ("fractal", "default"), ("noise", "default"), ("fractal2", "default")]
    for row in comparisons.itertuples():
        ours, theirs = outputs[(row.calibration, row.method)], outputs[("cifar10", "default")]
        agreement = paired_difference(ours == fp32, theirs == fp32, **OPTIONS)
        top1 = paired_difference(ours == labels, theirs == labels, **OPTIONS)
        assert (row.test_set, row.model, row.reference, row.num_images) == ("test", "m", "cifar10", N)
        assert (row.delta_agreement, row.delta_agreement_ci_low, row.delta_agreement_ci_high,
                row.delta_agreement_mcnemar_p, row.agreement_distinguishable) == (
            agreement.estimate, agreement.ci_low, agreement.ci_high, agreement.mcnemar_p, agreement.distinguishable)
        assert (row.delta_top1, row.delta_top1_ci_low, row.delta_top1_ci_high, row.delta_top1_mcnemar_p,
                row.top1_distinguishable) == (top1.estimate, top1.ci_low, top1.ci_high, top1.mcnemar_p,
                                              top1.distinguishable)
    noise = comparisons.set_index("calibration").loc["noise"]
    assert noise.delta_agreement == -50 / N and noise.agreement_distinguishable
    assert compare_calibrations(summary, lookup, "nothing").empty
    # the defaults: seed 0, 9,999 resamples, 95 %
    default = compare_calibrations(summary, lookup, "cifar10").set_index("calibration").loc["fractal"]
    ours, theirs = outputs[("fractal", "default")], outputs[("cifar10", "default")]
    expected = paired_difference(ours == fp32, theirs == fp32, seed=0, resamples=9999, confidence=0.95)
    assert (default.delta_agreement_ci_low, default.delta_agreement_ci_high) == (expected.ci_low, expected.ci_high)


def test_the_recommendation_rows_and_their_sentences():
    summary, lookup, outputs, fp32, labels = _study()
    comparisons = compare_calibrations(summary, lookup, "cifar10", **OPTIONS)
    table = recommend(summary, comparisons, lookup, KINDS, ["default", "aa", "absent"], "cifar10", **OPTIONS)
    assert list(zip(table.scope, table.method, table.calibration, strict=True)) == [
        ("method", "default", "fractal"), ("calibration", "default", "fractal"), ("calibration", "aa", "noise")]
    overall = table.iloc[0]
    assert overall.excluded_for_speed == "fractal/aa (1.10×, 21 float layers)"
    assert overall.min_speedup == pytest.approx(0.8 * 2.375) and overall.study_has_real_data  # 0.8 × median of all-INT8
    assert (overall.reference_calibration, overall.real_best_calibration, overall.real_best_method) == (
        "cifar10", "own", "aa")  # the best real cell keeping the speed: own/aa agrees most
    assert overall.verdict == verdict({key: overall[f"{key}_vs_real_best"] for key in (
        "delta_agreement", "delta_top1")} | {"agreement_distinguishable": overall.distinguishable_from_real_best,
                                            "top1_distinguishable": overall.top1_distinguishable_from_real_best})
    fractal, own = outputs[("fractal", "default")], outputs[("own", "aa")]
    versus_best = paired_difference(fractal == fp32, own == fp32, **OPTIONS)
    assert (overall.delta_agreement_vs_real_best, overall.delta_agreement_ci_low_vs_real_best) == (
        versus_best.estimate, versus_best.ci_low)
    assert overall.agreement == summary.agreement_with_fp32[1] and overall.speedup == 2.3
    assert overall.indistinguishable_from_best == "fractal2/default"
    # method aa: its real cell is a folder set, so that is its reference
    aa = table.iloc[2]
    assert aa.reference_calibration == "own" and aa.excluded_for_speed == "fractal/aa (1.10×, 21 float layers)"
    assert aa.float_layers == 3 and aa.calibration_kind == "noise"
    assert table.iloc[0].statement == STATEMENT_ANY_METHOD
    assert answer(table.iloc[0].to_dict()) == ANSWER
    assert aa.statement == STATEMENT_AA


def test_without_candidates_or_real_data_the_sentence_says_so():
    slow_only = {cell: spec for cell, spec in CELLS.items() if cell in {("fractal", "aa"), ("own", "aa")}}
    summary, lookup, *_ = _study(slow_only, test_set="jpeg")
    table = recommend(summary, compare_calibrations(summary, lookup, "own"), lookup, KINDS, ["aa"], "own")
    assert table.statement.tolist() == [
        "m, test set jpeg (400 images), any method: no calibration set without real images keeps the INT8 speed (all "
        "layers in INT8, or at least 1.92× speed-up); excluded: fractal/aa (1.10×, 21 float layers).",
        "m, test set jpeg (400 images), method aa: no calibration set without real images keeps the INT8 speed (all "
        "layers in INT8, or at least 1.92× speed-up); excluded: fractal/aa (1.10×, 21 float layers)."]
    assert answer(table.iloc[0].to_dict()) == "no cell without real images keeps the INT8 speed."
    synthetic = {cell: spec for cell, spec in CELLS.items() if spec[0] in ("noise", "fractal")}
    summary, lookup, *_ = _study(synthetic)
    summary["test_set_lossy"] = True
    table = recommend(summary, compare_calibrations(summary, lookup, "cifar10"), lookup, KINDS, ["default"], None,
                      resamples=60)
    overall = table.iloc[0]
    assert overall.statement.startswith("m, test split (400 lossy images), any method: the best calibration source "
                                        "without real images is fractal with method default: ")
    assert overall.statement.endswith(" The study has no real-data calibration set to compare with. Not "
                                      "distinguishable from it in agreement: fractal2/default. Left out for losing "
                                      "the INT8 speed: fractal/aa (1.10×, 21 float layers).")
    assert answer(overall.to_dict()).endswith("; with data: no cell to compare with (the study has no real-data "
                                              "calibration set).")
    overall["study_has_real_data"] = True
    assert answer(overall.to_dict()).endswith("; with data: no cell to compare with (the study ran none of this "
                                              "model).")


@pytest.mark.parametrize(("compared", "expected"), [
    ({"agreement_distinguishable": True, "delta_agreement": -0.01, "top1_distinguishable": True, "delta_top1": 0.02},
     "worse than real data (agreement)"),
    ({"agreement_distinguishable": True, "delta_agreement": 0.0, "top1_distinguishable": False, "delta_top1": -1},
     "better than real data (agreement)"),
    ({"agreement_distinguishable": False, "delta_agreement": -0.5, "top1_distinguishable": True, "delta_top1": -0.01},
     "worse than real data (top-1)"),
    ({"agreement_distinguishable": False, "delta_agreement": -0.5, "top1_distinguishable": True, "delta_top1": 0.01},
     "better than real data (top-1)"),
    ({"agreement_distinguishable": False, "delta_agreement": -0.5, "top1_distinguishable": False, "delta_top1": -1},
     "as good as real data"),
])
def test_verdict(compared, expected):
    assert verdict(compared) == expected


# the sentences of the study above, read and checked by hand against its numbers
STATEMENT_ANY_METHOD = (
    'm, test split (400 images), any method: the best calibration source without real images is fractal '
    'with method default: agreement with FP32 97.0 % [94.8, 98.3], Δ top-1 -1.5 pp [-2.8, -0.4], speed-up'
    ' 2.30×, 0 layers left in float. Calibrated on real images (cifar10), the same method agrees 97.5 % '
    '[95.5, 98.6]; the difference is -0.5 pp agreement [-2.0, +1.0] (McNemar p = 0.832) and -0.5 pp top-1'
    ' [-1.5, +0.5] (p = 0.754). In agreement it is not distinguishable from real-data calibration; in '
    'top-1 it does not differ significantly (90 % intervals). The best cell calibrated on real images by '
    'any method, own/aa, agrees 99.0 % [97.5, 99.6], Δ top-1 +0.0 pp; without real images − with them: '
    '-2.0 pp agreement [-3.3, -0.7] (McNemar p = 0.0768), -1.5 pp top-1 [-2.3, -0.8] (p = 0.0312): worse '
    'than real data (agreement). Not distinguishable from it in agreement: fractal2/default. Left out for'
    ' losing the INT8 speed: fractal/aa (1.10×, 21 float layers).')
ANSWER = (
    'without data: Δ −1.5 pp [−2.8, −0.4] (fractal/default, agreement 97.0 %); with data: Δ +0.0 pp '
    '[+0.0, +0.0] (own/aa, agreement 99.0 %); difference −1.5 pp [−2.3, −0.8] top-1 (McNemar p = 0.031), '
    '−2.0 pp [−3.3, −0.7] agreement (p = 0.077): worse than real data (agreement).')
STATEMENT_AA = (
    'm, test split (400 images), method aa: the best calibration source without real images is noise: '
    'agreement with FP32 92.5 % [89.5, 94.7], Δ top-1 -6.2 pp [-8.5, -3.9], speed-up 2.35×, 3 layers left'
    ' in float. Calibrated on real images (own), the same method agrees 99.0 % [97.5, 99.6]; the '
    'difference is -6.5 pp agreement [-9.0, -5.0] (McNemar p = 6.16e-06) and -6.2 pp top-1 [-7.8, -4.8] '
    '(p = 5.96e-08). In agreement it differs significantly from real-data calibration; in top-1 it '
    'differs (90 % intervals). The best cell calibrated on real images by any method, own/aa, agrees 99.0'
    ' % [97.5, 99.6], Δ top-1 +0.0 pp; without real images − with them: -6.5 pp agreement [-9.0, -5.0] '
    '(McNemar p = 6.16e-06), -6.2 pp top-1 [-7.8, -4.8] (p = 5.96e-08): worse than real data (agreement).'
    ' Left out for losing the INT8 speed: fractal/aa (1.10×, 21 float layers).')
