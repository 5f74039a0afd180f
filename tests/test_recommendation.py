"""The recommendation on a small study held in memory (no page build): which cells compete, the paired comparisons,
the verdicts and the sentences that state them."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from synthcal.evaluation.stats import paired_difference, versus_reference
from synthcal.report.recommendation import (
    COMPARISON_COLUMNS,
    RECOMMENDATION_COLUMNS,
    answer,
    compare_calibrations,
    recommend,
    verdict,
)

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


# --- studies built image by image: which images a cell fixes (FP32 wrong, INT8 right) and breaks (FP32 right, INT8
# changed), so the figures can be large, positive and exactly on a threshold

FP32_WRONG = 40


def _cell(test_set, model, calibration, method, kind, *, fixes=0, breaks=0, offset=0, float_layers=0, speedup=2.5):
    return {"test_set": test_set, "model": model, "calibration": calibration, "method": method, "kind": kind,
            "fixes": fixes, "breaks": breaks, "offset": offset, "float_layers": float_layers, "speedup": speedup}


def _built(cells, n=N):
    labels = np.random.default_rng(1).integers(0, 10, n)
    fp32 = labels.copy()
    fp32[:FP32_WRONG] = (labels[:FP32_WRONG] + 1) % 10
    outputs, rows = {}, []
    for cell in cells:
        ours = fp32.copy()
        fixed = np.arange(cell["offset"], cell["offset"] + cell["fixes"]) % FP32_WRONG
        ours[fixed] = labels[fixed]
        broken = FP32_WRONG + np.arange(cell["offset"], cell["offset"] + cell["breaks"]) % (n - FP32_WRONG)
        ours[broken] = (fp32[broken] + 3) % 10
        key = (cell["test_set"], cell["model"], cell["calibration"], cell["method"])
        outputs[key] = ours
        stats = versus_reference(ours, fp32, labels, resamples=60)
        rows.append({"precision": "int8", **{name: cell[name] for name in (
            "test_set", "model", "method", "calibration", "speedup", "float_layers")}, "num_images": n,
            **{name: stats[name] for name in ("agreement_with_fp32", "agreement_ci_low", "agreement_ci_high",
                                              "delta_top1", "delta_top1_ci_low", "delta_top1_ci_high")}})

    def lookup(test_set, model, calibration, method):
        return outputs[(test_set, model, calibration, method)], fp32, labels

    kinds = {cell["calibration"]: cell["kind"] for cell in cells}
    return pd.DataFrame(rows), lookup, kinds, fp32, labels


def _signed(low, high):
    return f"[{low * 100:+.1f}, {high * 100:+.1f}]"


def test_large_positive_differences_are_stated_with_their_signs():
    cells = [_cell("test", "m", "real", "default", "cifar10", breaks=120),
             _cell("test", "m", "gan", "default", "stylegan2", fixes=20, breaks=2, offset=5),
             _cell("test", "m", "gan", "solo", "stylegan2", breaks=30, offset=9)]
    summary, lookup, kinds, fp32, labels = _built(cells)
    comparisons = compare_calibrations(summary, lookup, "real", **OPTIONS)
    table = recommend(summary, comparisons, lookup, kinds, ["default", "solo"], "real", **OPTIONS)
    overall, solo = table.iloc[0], table.iloc[2]
    gan, real = lookup("test", "m", "gan", "default")[0], lookup("test", "m", "real", "default")[0]
    agreement = paired_difference(gan == fp32, real == fp32, **OPTIONS)
    top1 = paired_difference(gan == labels, real == labels, **OPTIONS)
    assert agreement.ci_low > 0.2 and top1.ci_low > 0.3  # the synthetic set is far better than this real one
    real_row = summary[summary.calibration == "real"].iloc[0]
    assert (overall.real_best_speedup, overall.real_best_float_layers, overall.reference_speedup) == (2.5, 0, 2.5)
    assert overall.reference_delta_top1 == real_row.delta_top1 == overall.real_best_delta_top1 == -0.3
    for key in ("top1_distinguishable_from_real_best", "top1_distinguishable_from_reference",
                "distinguishable_from_real_best", "distinguishable_from_reference"):
        assert not pd.isna(overall[key]) and bool(overall[key]), key  # recorded, and True
    gan_row = summary[(summary.calibration == "gan") & (summary.method == "default")].iloc[0]
    assert gan_row.delta_top1_ci_high > 0
    statement = overall.statement
    assert statement.startswith("m, test split (400 images), any method: the best calibration source without real "
                                "images is gan (stylegan2) with method default: ")
    assert (f"Δ top-1 {gan_row.delta_top1 * 100:+.1f} pp "
            f"{_signed(gan_row.delta_top1_ci_low, gan_row.delta_top1_ci_high)}, speed-up") in statement
    assert (f"Δ top-1 -30.0 pp; without real images − with them: {agreement.estimate * 100:+.1f} pp agreement "
            f"{_signed(agreement.ci_low, agreement.ci_high)} (McNemar p = {agreement.mcnemar_p:.3g}), "
            f"{top1.estimate * 100:+.1f} pp top-1 {_signed(top1.ci_low, top1.ci_high)}") in statement
    assert (f"; the difference is {agreement.estimate * 100:+.1f} pp agreement "
            f"{_signed(agreement.ci_low, agreement.ci_high)}") in statement
    assert f"difference +{top1.estimate * 100:.1f} pp [+{top1.ci_low * 100:.1f}, +{top1.ci_high * 100:.1f}] top-1" in (
        answer(overall.to_dict()))
    # method solo ran on no real set: said, then the best real cell of any method
    assert solo.statement.startswith("m, test split (400 images), method solo: the best calibration source without "
                                     "real images is gan (stylegan2): ")
    assert solo.calibration == "gan" and solo.statement.count(" The study did not run method solo on real images. "
                                                              "The best cell calibrated on real images by any "
                                                              "method, real/default, agrees ") == 1


def test_groups_keep_the_study_order_and_each_quotes_its_own_comparison():
    cells = []
    for test_set, other in (("test", 0), ("jpeg", 1)):  # the sets' figures differ: a row of the other is seen
        for model, shift in (("m2", other), ("m1", 3 + other)):
            cells += [_cell(test_set, model, "real", "default", "cifar10", breaks=10 + shift, offset=shift),
                      _cell(test_set, model, "gan", "default", "stylegan2", breaks=20 + 2 * shift, offset=7),
                      _cell(test_set, model, "gan", "aa", "stylegan2", breaks=25 + shift, offset=1)]
        cells += [_cell(test_set, "synthetic_only", "gan", "default", "stylegan2", breaks=5),  # no real cell
                  _cell(test_set, "real_only", "real", "default", "cifar10", breaks=5)]  # no candidate
    summary, lookup, kinds, fp32, labels = _built(cells)
    # the comparisons table quoted as it is (here with other resamples than the recommendation's own)
    comparisons = compare_calibrations(summary, lookup, "real", seed=5, resamples=40, confidence=0.9)
    table = recommend(summary, comparisons, lookup, kinds, ["default", "aa"], "real", **OPTIONS)
    groups = list(dict.fromkeys(zip(table.test_set, table.model, strict=True)))
    assert groups == [("test", "m2"), ("test", "m1"), ("test", "synthetic_only"), ("test", "real_only"),
                      ("jpeg", "m2"), ("jpeg", "m1"), ("jpeg", "synthetic_only"), ("jpeg", "real_only")]
    for row in table[table.scope == "calibration"].itertuples():
        if row.model in ("synthetic_only", "real_only"):
            continue
        quoted = comparisons[(comparisons.test_set == row.test_set) & (comparisons.model == row.model)
                             & (comparisons.method == row.method) & (comparisons.calibration == row.calibration)]
        if row.method == "aa":  # no real cell of aa: nothing to quote
            assert quoted.empty and pd.isna(row.reference_calibration)
            continue
        quoted = quoted.iloc[0]
        assert (row.delta_agreement_vs_reference, row.delta_agreement_ci_low_vs_reference,
                row.delta_top1_ci_high_vs_reference) == (quoted.delta_agreement, quoted.delta_agreement_ci_low,
                                                         quoted.delta_top1_ci_high)
    lonely = table[(table.model == "synthetic_only") & (table.test_set == "jpeg")].iloc[0]
    assert lonely.statement.startswith("synthetic_only, test set jpeg (400 images), any method: the best ")
    assert lonely.statement.endswith(" The study ran no cell of synthetic_only calibrated on real images to compare "
                                     "with.")
    nothing = table[(table.model == "real_only") & (table.test_set == "test")]
    assert nothing.method.tolist() == ["", "default"]
    assert nothing.statement.iloc[0].endswith("at least 2.00× speed-up); excluded: none.")


def test_thresholds_ties_and_which_real_cell_is_compared():
    cells = [_cell("test", "m", "fast_real", "default", "folder", breaks=30, offset=50),
             _cell("test", "m", "real", "default", "cifar10", breaks=20, offset=60),  # the reference: not the best
             _cell("test", "m", "slow_real", "aa", "cifar10", breaks=1, float_layers=9, speedup=1.2),
             _cell("test", "m", "best", "default", "fractal", breaks=2, offset=100),
             _cell("test", "m", "tie_p_alpha", "default", "fractal", breaks=6, offset=100),  # McNemar (0, 4): p 0.125
             _cell("test", "m", "tie", "default", "noise", breaks=5, offset=100),  # (0, 3): p 0.25
             _cell("test", "m", "far", "default", "noise", breaks=40, offset=100),
             _cell("test", "m", "on_the_line", "aa", "noise", breaks=1, offset=200, float_layers=4, speedup=2.0),
             _cell("test", "m", "below", "aa", "noise", breaks=1, offset=210, float_layers=4, speedup=1.99),
             _cell("test", "m", "slower", "aa", "noise", breaks=1, offset=220, float_layers=5, speedup=1.5)]
    summary, lookup, kinds, *_ = _built(cells)
    options = OPTIONS | {"confidence": 0.875}  # alpha 0.125: exactly the p of the first tie
    comparisons = compare_calibrations(summary, lookup, "real", **options)
    table = recommend(summary, comparisons, lookup, kinds, ["default", "aa"], "real", **options)
    overall, default, aa = (table.iloc[i] for i in range(3))
    # 0.8 × 2.5 = 2.0: a cell with layers in float at exactly that speed-up keeps the speed
    assert overall.min_speedup == 2.0 and aa.calibration == "on_the_line"
    assert aa.excluded_for_speed == "below/aa (1.99×, 4 float layers), slower/aa (1.50×, 5 float layers)"
    assert default.indistinguishable_from_best == "tie_p_alpha/default, tie/default"
    # the reference real set of the method, though another real set of it agrees more
    assert default.reference_calibration == "real"
    # the best real cell keeping the speed: slow_real agrees more but is slow; best is faster but not real
    assert (overall.real_best_calibration, overall.real_best_method) == ("real", "default")
    only_slow_real = [cell for cell in cells if cell["calibration"] not in ("fast_real", "real")]
    summary, lookup, kinds, *_ = _built(only_slow_real)
    table = recommend(summary, compare_calibrations(summary, lookup, "slow_real", **options), lookup, kinds,
                      ["default", "aa"], "slow_real", **options)
    assert (table.iloc[0].real_best_calibration, table.iloc[0].real_best_speedup) == ("slow_real", 1.2)


def test_a_cell_without_a_reference_of_its_method_before_others_skips_only_itself():
    cells = [_cell("test", "m", "gan", "aa", "stylegan2", breaks=3),  # aa has no real cell: not compared
             _cell("test", "m", "real", "default", "cifar10", breaks=3),
             _cell("test", "m", "gan", "default", "stylegan2", breaks=9)]
    summary, lookup, kinds, *_ = _built(cells)
    comparisons = compare_calibrations(summary, lookup, "real", **OPTIONS)
    assert list(zip(comparisons.calibration, comparisons.method, strict=True)) == [("gan", "default")]


def test_empty_tables_keep_their_columns_and_the_defaults_are_the_statistics_defaults():
    summary, lookup, *_ = _study()
    assert compare_calibrations(summary, lookup, "nothing").columns.tolist() == COMPARISON_COLUMNS
    empty = recommend(summary[summary.precision == "fp32"], compare_calibrations(summary, lookup, "nothing"), lookup,
                      KINDS, ["default"], None)
    assert empty.empty and empty.columns.tolist() == RECOMMENDATION_COLUMNS
    table = recommend(summary, compare_calibrations(summary, lookup, "cifar10", **OPTIONS), lookup, KINDS,
                      ["default", "aa"], "cifar10", **OPTIONS)
    assert table.columns.tolist()[:len(RECOMMENDATION_COLUMNS)] == RECOMMENDATION_COLUMNS
    # one seed, resample count and level for the whole study: the statistics module's
    defaults = {name: parameter.default for name, parameter in inspect.signature(paired_difference).parameters.items()
                if name in ("seed", "resamples", "confidence")}
    for function in (compare_calibrations, recommend):
        parameters = inspect.signature(function).parameters
        assert {name: parameters[name].default for name in defaults} == defaults
