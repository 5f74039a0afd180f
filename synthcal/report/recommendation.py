"""Which calibration source without real images to use, and is it as good as calibrating on real data?

Works on the report's tables: ``summary`` (one row per evaluation, with speed-up and agreement intervals) and the
per-image predictions. For every test set and model:

- *candidates* are INT8 cells calibrated without real images (calibration kinds other than ``REAL_DATA_KINDS``)
  that keep the INT8 speed. A cell with every layer in INT8 runs the fully quantized graph, so it does by
  construction (its measured speed-up differs from its neighbours' only by timing noise); a cell with layers
  left in float must measure at least ``min_speedup_share`` of the median speed-up of the fully quantized cells
  (accuracy-aware cells that revert many layers to float trade that speed away and drop out);
- the *best* candidate has the highest agreement with FP32 (ties: the faster); candidates whose agreement does
  not differ from the best one's (exact McNemar, paired) are listed beside it;
- it is compared, image by image, with the same method calibrated on real images (the reference real-data set, else
  the best real-data cell of that method): Δ agreement and Δ top-1 with bootstrap intervals and McNemar p-values;
- and with the best cell calibrated on real images by any method (``real_best_*``, the same speed rule): the
  answer to "how much do I lose without real data?", with a ``verdict``.

One row per method (scope ``calibration``: the best source for that method) and one over all methods
(scope ``method``: the best method without real images). A model without a real-data cell that keeps the INT8
speed has no real-data columns, and its sentence says why (the study has no real-data set, or ran none for it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from synthcal.calibration import REAL_DATA_KINDS
from synthcal.evaluation.evaluation_sets import DEFAULT_TEST_SET
from synthcal.evaluation.stats import CONFIDENCE, RESAMPLES, mcnemar_exact, paired_difference

__all__ = ["REAL_DATA_KINDS", "compare_calibrations", "recommend", "reference_calibration"]

# (test_set, model, calibration, method) -> (int8 predictions, fp32 predictions, labels) on that test set
PredictionLookup = Callable[[str, str, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]


def reference_calibration(calibrations: list[str], kinds: dict[str, str], preferred: str | None = None) -> str | None:
    """The real-data calibration set others are compared with: ``preferred``, else the first set of the first
    ``REAL_DATA_KINDS`` kind the study has (a ``cifar10`` set, else ``folder``, else ``crossfold``; None without)."""
    if preferred:
        real = [name for name in calibrations if kinds.get(name) in REAL_DATA_KINDS]
        if preferred not in calibrations:
            raise ValueError(f"report.reference_calibration {preferred!r} is not in the study's calibration sets "
                             f"{calibrations} (its real-data sets: {real})")
        if kinds.get(preferred) not in REAL_DATA_KINDS:
            raise ValueError(f"report.reference_calibration {preferred!r} is kind {kinds.get(preferred)}, not real "
                             f"images (the study's real-data sets: {real})")
        return preferred
    for wanted in REAL_DATA_KINDS:
        for name in calibrations:
            if kinds.get(name) == wanted:
                return name
    return None


def compare_calibrations(summary: pd.DataFrame, predictions: PredictionLookup, reference: str, *, seed: int = 0,
                         resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Every INT8 cell against the same model, method and test set calibrated on ``reference``."""
    int8 = summary[summary.precision == "int8"]
    rows = []
    for cell in int8.itertuples():
        if cell.calibration == reference:
            continue
        if not ((int8.test_set == cell.test_set) & (int8.model == cell.model) & (int8.method == cell.method)
                & (int8.calibration == reference)).any():
            continue
        ours, fp32, labels = predictions(cell.test_set, cell.model, cell.calibration, cell.method)
        theirs, _, _ = predictions(cell.test_set, cell.model, reference, cell.method)
        options = {"seed": seed, "resamples": resamples, "confidence": confidence}
        top1 = paired_difference(ours == labels, theirs == labels, **options)
        agreement = paired_difference(ours == fp32, theirs == fp32, **options)
        rows.append({"test_set": cell.test_set, "model": cell.model, "method": cell.method,
                     "calibration": cell.calibration, "reference": reference,
                     "delta_agreement": agreement.estimate, "delta_agreement_ci_low": agreement.ci_low,
                     "delta_agreement_ci_high": agreement.ci_high, "delta_agreement_mcnemar_p": agreement.mcnemar_p,
                     "delta_top1": top1.estimate, "delta_top1_ci_low": top1.ci_low,
                     "delta_top1_ci_high": top1.ci_high, "delta_top1_mcnemar_p": top1.mcnemar_p,
                     "agreement_distinguishable": agreement.distinguishable,
                     "top1_distinguishable": top1.distinguishable, "num_images": top1.n})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


COMPARISON_COLUMNS = [
    "test_set", "model", "method", "calibration", "reference", "delta_agreement", "delta_agreement_ci_low",
    "delta_agreement_ci_high", "delta_agreement_mcnemar_p", "delta_top1", "delta_top1_ci_low", "delta_top1_ci_high",
    "delta_top1_mcnemar_p", "agreement_distinguishable", "top1_distinguishable", "num_images",
]


def recommend(summary: pd.DataFrame, comparisons: pd.DataFrame, predictions: PredictionLookup,
              kinds: dict[str, str], methods: list[str], reference: str | None, *, min_speedup_share: float = 0.8,
              confidence: float = CONFIDENCE, seed: int = 0, resamples: int = RESAMPLES) -> pd.DataFrame:
    """The recommendation rows (see the module's docstring), each with a sentence that states it."""
    alpha = 1 - confidence
    options = {"seed": seed, "resamples": resamples, "confidence": confidence}
    rows = []
    int8 = summary[summary.precision == "int8"]
    for (test_set, model), cells in int8.groupby(["test_set", "model"], sort=False):
        all_int8 = cells.float_layers == 0
        typical = cells.speedup[all_int8].median() if all_int8.any() else cells.speedup.max()
        real = cells.calibration.map(lambda name: kinds.get(name) in REAL_DATA_KINDS)
        keeps_speed = all_int8 | (cells.speedup >= min_speedup_share * typical)
        real_pool = cells[real & keeps_speed] if (real & keeps_speed).any() else cells[real]
        real_best = _best(real_pool)
        # only the methods this model has cells of (a study of several grids need not run every method on it)
        for scope, method in [("method", None), *(("calibration", m) for m in methods if (cells.method == m).any())]:
            pool = cells[~real] if method is None else cells[~real & (cells.method == method)]
            candidates = pool[keeps_speed.loc[pool.index]]
            row = {"test_set": test_set, "model": model, "scope": scope, "method": method or "",
                   "num_images": int(cells.num_images.iloc[0]), "min_speedup": min_speedup_share * typical,
                   "test_set_lossy": bool(cells.get("test_set_lossy", pd.Series([False])).iloc[0]),
                   "excluded_for_speed": _names(pool[~keeps_speed.loc[pool.index]]),
                   "study_has_real_data": reference is not None}
            if candidates.empty:
                row["statement"] = _statement(row, None, None)
                rows.append(row)
                continue
            best = _best(candidates)
            best_agrees = _agrees(predictions, test_set, model, best.calibration, best.method)
            ties = [other for other in candidates.itertuples() if other.Index != best.name and mcnemar_exact(
                *_discordant(best_agrees, _agrees(predictions, test_set, model, other.calibration, other.method))
            ) >= alpha]
            row.update(method=best.method, calibration=best.calibration, calibration_kind=kinds.get(best.calibration),
                       agreement=best.agreement_with_fp32, agreement_ci_low=best.agreement_ci_low,
                       agreement_ci_high=best.agreement_ci_high, delta_top1=best.delta_top1,
                       delta_top1_ci_low=best.delta_top1_ci_low, delta_top1_ci_high=best.delta_top1_ci_high,
                       speedup=best.speedup, float_layers=int(best.float_layers),
                       indistinguishable_from_best=", ".join(f"{t.calibration}/{t.method}" for t in ties))
            same_method = cells[real & (cells.method == best.method)]
            reference_cell = same_method[same_method.calibration == reference]
            if reference_cell.empty:
                reference_cell = same_method
            if len(reference_cell):
                ref = _best(reference_cell)
                versus = comparisons[(comparisons.test_set == test_set) & (comparisons.model == model)
                                     & (comparisons.method == best.method)
                                     & (comparisons.calibration == best.calibration)
                                     & (comparisons.reference == ref.calibration)]
                compared = (versus.iloc[0] if len(versus) else
                            _compare(predictions, test_set, model, best, ref, options))
                row.update(reference_calibration=ref.calibration, reference_agreement=ref.agreement_with_fp32,
                           reference_agreement_ci_low=ref.agreement_ci_low,
                           reference_agreement_ci_high=ref.agreement_ci_high, reference_speedup=ref.speedup,
                           reference_delta_top1=ref.delta_top1,
                           **{f"{key}_vs_reference": compared[key] for key in (
                               "delta_agreement", "delta_agreement_ci_low", "delta_agreement_ci_high",
                               "delta_agreement_mcnemar_p", "delta_top1", "delta_top1_ci_low", "delta_top1_ci_high",
                               "delta_top1_mcnemar_p")},
                           distinguishable_from_reference=bool(compared["agreement_distinguishable"]),
                           top1_distinguishable_from_reference=bool(compared["top1_distinguishable"]))
            if real_best is not None:
                compared = _compare(predictions, test_set, model, best, real_best, options)
                row.update(real_best_calibration=real_best.calibration, real_best_method=real_best.method,
                           real_best_agreement=real_best.agreement_with_fp32,
                           real_best_agreement_ci_low=real_best.agreement_ci_low,
                           real_best_agreement_ci_high=real_best.agreement_ci_high,
                           real_best_delta_top1=real_best.delta_top1,
                           real_best_delta_top1_ci_low=real_best.delta_top1_ci_low,
                           real_best_delta_top1_ci_high=real_best.delta_top1_ci_high,
                           real_best_speedup=real_best.speedup, real_best_float_layers=int(real_best.float_layers),
                           **{f"{key}_vs_real_best": compared[key] for key in (
                               "delta_agreement", "delta_agreement_ci_low", "delta_agreement_ci_high",
                               "delta_agreement_mcnemar_p", "delta_top1", "delta_top1_ci_low", "delta_top1_ci_high",
                               "delta_top1_mcnemar_p")},
                           distinguishable_from_real_best=bool(compared["agreement_distinguishable"]),
                           top1_distinguishable_from_real_best=bool(compared["top1_distinguishable"]),
                           verdict=verdict(compared))
            row["statement"] = _statement(row, best, confidence)
            rows.append(row)
    return pd.DataFrame(rows, columns=[*RECOMMENDATION_COLUMNS, *sorted(
        {key for row in rows for key in row} - set(RECOMMENDATION_COLUMNS))])


def verdict(compared: dict) -> str:
    """Without real images against with them, in words: agreement decides where it is distinguishable, else top-1."""
    for measure, name in (("agreement", "agreement"), ("top1", "top-1")):
        if compared[f"{measure}_distinguishable"]:
            worse = compared[f"delta_{measure}"] < 0
            return f"{'worse' if worse else 'better'} than real data ({name})"
    return "as good as real data"


def _best(cells: pd.DataFrame):
    """The cell with the highest agreement with FP32 (ties: the faster; then study order), or None."""
    if cells.empty:
        return None
    return cells.sort_values(["agreement_with_fp32", "speedup"], ascending=False, kind="stable").iloc[0]


def _compare(predictions: PredictionLookup, test_set: str, model: str, ours, theirs, options: dict) -> dict:
    """Cell ``ours`` − cell ``theirs`` on the same images: agreement and top-1, paired."""
    mine, fp32, labels = predictions(test_set, model, ours.calibration, ours.method)
    other, _, _ = predictions(test_set, model, theirs.calibration, theirs.method)
    agreement = paired_difference(mine == fp32, other == fp32, **options)
    top1 = paired_difference(mine == labels, other == labels, **options)
    return {"delta_agreement": agreement.estimate, "delta_agreement_ci_low": agreement.ci_low,
            "delta_agreement_ci_high": agreement.ci_high, "delta_agreement_mcnemar_p": agreement.mcnemar_p,
            "delta_top1": top1.estimate, "delta_top1_ci_low": top1.ci_low, "delta_top1_ci_high": top1.ci_high,
            "delta_top1_mcnemar_p": top1.mcnemar_p, "agreement_distinguishable": agreement.distinguishable,
            "top1_distinguishable": top1.distinguishable}


RECOMMENDATION_COLUMNS = [
    "test_set", "model", "scope", "method", "calibration", "calibration_kind", "agreement", "agreement_ci_low",
    "agreement_ci_high", "speedup", "float_layers", "reference_calibration", "reference_agreement",
    "reference_agreement_ci_low", "reference_agreement_ci_high", "delta_agreement_vs_reference",
    "delta_agreement_ci_low_vs_reference", "delta_agreement_ci_high_vs_reference",
    "delta_agreement_mcnemar_p_vs_reference", "delta_top1_vs_reference", "delta_top1_ci_low_vs_reference",
    "delta_top1_ci_high_vs_reference", "delta_top1_mcnemar_p_vs_reference", "distinguishable_from_reference",
    "top1_distinguishable_from_reference", "real_best_calibration", "real_best_method", "real_best_agreement",
    "real_best_agreement_ci_low", "real_best_agreement_ci_high", "real_best_delta_top1", "real_best_delta_top1_ci_low",
    "real_best_delta_top1_ci_high", "real_best_speedup", "delta_agreement_vs_real_best",
    "delta_agreement_ci_low_vs_real_best", "delta_agreement_ci_high_vs_real_best",
    "delta_agreement_mcnemar_p_vs_real_best", "delta_top1_vs_real_best", "delta_top1_ci_low_vs_real_best",
    "delta_top1_ci_high_vs_real_best", "delta_top1_mcnemar_p_vs_real_best", "distinguishable_from_real_best",
    "top1_distinguishable_from_real_best", "verdict", "statement",
]


def _agrees(predictions: PredictionLookup, test_set, model, calibration, method) -> np.ndarray:
    ours, fp32, _ = predictions(test_set, model, calibration, method)
    return ours == fp32


def _discordant(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    return int((a & ~b).sum()), int((~a & b).sum())


def _names(cells: pd.DataFrame) -> str:
    return ", ".join(f"{c.calibration}/{c.method} ({c.speedup:.2f}×, {int(c.float_layers)} float layers)"
                     for c in cells.itertuples())


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _interval(low: float, high: float, signed: bool = False) -> str:
    return f"[{low * 100:+.1f}, {high * 100:+.1f}]" if signed else f"[{low * 100:.1f}, {high * 100:.1f}]"


def _statement(row: dict, best, confidence: float | None) -> str:
    lossy = " lossy" if row.get("test_set_lossy") else ""
    split = "test split" if row["test_set"] == DEFAULT_TEST_SET else f"test set {row['test_set']}"
    where = f"{row['model']}, {split} ({row['num_images']:,}{lossy} images)"
    what = (f"method {row['method']}" if row["scope"] == "calibration" else "any method")
    if best is None:
        return (f"{where}, {what}: no calibration set without real images keeps the INT8 speed (all layers in "
                f"INT8, or at least {row['min_speedup']:.2f}× speed-up); excluded: "
                f"{row['excluded_for_speed'] or 'none'}.")
    level = f"{confidence * 100:.0f} %"
    kind = f" ({row['calibration_kind']})" if row["calibration_kind"] != row["calibration"] else ""
    text = (f"{where}, {what}: the best calibration source without real images is {row['calibration']}{kind}"
            + (f" with method {row['method']}" if row["scope"] == "method" else "")
            + f": agreement with FP32 {_pct(row['agreement'])} "
            f"{_interval(row['agreement_ci_low'], row['agreement_ci_high'])}, Δ top-1 "
            f"{row['delta_top1'] * 100:+.1f} pp {_interval(row['delta_top1_ci_low'], row['delta_top1_ci_high'], True)}"
            f", speed-up {row['speedup']:.2f}×, {row['float_layers']} layers left in float.")
    if row.get("reference_calibration"):
        verdict = ("differs significantly from" if row["distinguishable_from_reference"]
                   else "is not distinguishable from")
        top1_verdict = "differs" if row["top1_distinguishable_from_reference"] else "does not differ significantly"
        text += (f" Calibrated on real images ({row['reference_calibration']}), the same method agrees "
                 f"{_pct(row['reference_agreement'])} "
                 f"{_interval(row['reference_agreement_ci_low'], row['reference_agreement_ci_high'])}; the difference "
                 f"is {row['delta_agreement_vs_reference'] * 100:+.1f} pp agreement "
                 f"{_interval(row['delta_agreement_ci_low_vs_reference'], row['delta_agreement_ci_high_vs_reference'], True)}"  # noqa: E501
                 f" (McNemar p = {row['delta_agreement_mcnemar_p_vs_reference']:.3g}) and "
                 f"{row['delta_top1_vs_reference'] * 100:+.1f} pp top-1 "
                 f"{_interval(row['delta_top1_ci_low_vs_reference'], row['delta_top1_ci_high_vs_reference'], True)}"
                 f" (p = {row['delta_top1_mcnemar_p_vs_reference']:.3g}). In agreement it {verdict} real-data "
                 f"calibration; in top-1 it {top1_verdict} ({level} intervals).")
    elif row.get("real_best_calibration"):
        text += f" The study did not run method {row['method']} on real images."
    if row.get("real_best_calibration"):
        text += (f" The best cell calibrated on real images by any method, {row['real_best_calibration']}/"
                 f"{row['real_best_method']}, agrees {_pct(row['real_best_agreement'])} "
                 f"{_interval(row['real_best_agreement_ci_low'], row['real_best_agreement_ci_high'])}, Δ top-1 "
                 f"{row['real_best_delta_top1'] * 100:+.1f} pp; without real images − with them: "
                 f"{row['delta_agreement_vs_real_best'] * 100:+.1f} pp agreement "
                 f"{_interval(row['delta_agreement_ci_low_vs_real_best'], row['delta_agreement_ci_high_vs_real_best'], True)}"  # noqa: E501
                 f" (McNemar p = {row['delta_agreement_mcnemar_p_vs_real_best']:.3g}), "
                 f"{row['delta_top1_vs_real_best'] * 100:+.1f} pp top-1 "
                 f"{_interval(row['delta_top1_ci_low_vs_real_best'], row['delta_top1_ci_high_vs_real_best'], True)}"
                 f" (p = {row['delta_top1_mcnemar_p_vs_real_best']:.3g}): {row['verdict']}.")
    elif row.get("study_has_real_data"):
        text += f" The study ran no cell of {row['model']} calibrated on real images to compare with."
    else:
        text += " The study has no real-data calibration set to compare with."
    if row.get("indistinguishable_from_best"):
        text += f" Not distinguishable from it in agreement: {row['indistinguishable_from_best']}."
    if row.get("excluded_for_speed"):
        text += f" Left out for losing the INT8 speed: {row['excluded_for_speed']}."
    return text


def _pp(value: float) -> str:
    return f"{value * 100:+.1f}".replace("-", "−")


def _pp_interval(low: float, high: float) -> str:
    return f"[{_pp(low)}, {_pp(high)}]"


def answer(row: dict) -> str:
    """The study's question for one model and test set, from its scope ``method`` row: "without data: Δ … pp;
    with data: Δ … pp; difference … [interval]" (Δ: INT8 − FP32 top-1; difference: without − with, paired)."""
    if not isinstance(row.get("calibration"), str) or not row["calibration"]:
        return "no cell without real images keeps the INT8 speed."
    text = (f"without data: Δ {_pp(row['delta_top1'])} pp "
            f"{_pp_interval(row['delta_top1_ci_low'], row['delta_top1_ci_high'])} "
            f"({row['calibration']}/{row['method']}, agreement {_pct(row['agreement'])})")
    if not isinstance(row.get("real_best_calibration"), str):
        reason = ("the study ran none of this model" if row.get("study_has_real_data")
                  else "the study has no real-data calibration set")
        return text + f"; with data: no cell to compare with ({reason})."
    return (text + f"; with data: Δ {_pp(row['real_best_delta_top1'])} pp "
            f"{_pp_interval(row['real_best_delta_top1_ci_low'], row['real_best_delta_top1_ci_high'])} "
            f"({row['real_best_calibration']}/{row['real_best_method']}, agreement "
            f"{_pct(row['real_best_agreement'])}); difference {_pp(row['delta_top1_vs_real_best'])} pp "
            f"{_pp_interval(row['delta_top1_ci_low_vs_real_best'], row['delta_top1_ci_high_vs_real_best'])} top-1 "
            f"(McNemar p = {row['delta_top1_mcnemar_p_vs_real_best']:.2g}), "
            f"{_pp(row['delta_agreement_vs_real_best'])} pp "
            f"{_pp_interval(row['delta_agreement_ci_low_vs_real_best'], row['delta_agreement_ci_high_vs_real_best'])}"
            f" agreement (p = {row['delta_agreement_mcnemar_p_vs_real_best']:.2g}): {row['verdict']}.")
