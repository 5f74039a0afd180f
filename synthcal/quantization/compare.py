"""POT against NNCF on the same calibration sets: the report's engine comparison.

Every POT method is paired with every NNCF method of the same algorithm (DefaultQuantization ↔ ``nncf.quantize``,
AccuracyAwareQuantization ↔ ``nncf.quantize_with_accuracy_control``), cell by cell: same model, calibration set
and test set. Both INT8 models answer for the same test images, so the difference is paired: POT top-1 − NNCF
top-1 (equal to the difference of their Δ top-1, FP32 being shared) with a bootstrap interval over images and
the exact McNemar p-value (``synthcal.evaluation.stats.paired_difference``), and the same for agreement with FP32.
``settings_match`` says whether the two entries ask for the same thing where both engines have the setting
(preset, fast bias correction, whole-set statistics, accuracy-aware drop and metric).
"""

from __future__ import annotations

import pandas as pd

from synthcal.evaluation.stats import paired_difference
from synthcal.quantization import engine_of

COLUMNS = ["test_set", "model", "calibration", "algorithm", "pot_method", "nncf_method", "settings_match",
           "pot_delta_top1", "nncf_delta_top1", "pot_minus_nncf_top1", "pot_minus_nncf_top1_ci_low",
           "pot_minus_nncf_top1_ci_high", "pot_minus_nncf_mcnemar_p", "pot_only_correct", "nncf_only_correct",
           "pot_agreement", "nncf_agreement", "pot_minus_nncf_agreement", "pot_minus_nncf_agreement_ci_low",
           "pot_minus_nncf_agreement_ci_high", "pot_float_layers", "nncf_float_layers", "pot_seconds",
           "nncf_seconds", "num_images"]


def method_pairs(methods: dict, selected: list[str]) -> list[tuple[str, str]]:
    """(POT method, NNCF method) pairs of the same algorithm among the selected methods."""
    pot = [name for name in selected if engine_of(methods.get(name)) == "pot"]
    nncf = [name for name in selected if engine_of(methods.get(name)) == "nncf"]
    return [(p, n) for p in pot for n in nncf
            if methods[p].get("algorithm", "default") == methods[n].get("algorithm", "default")]


def settings_match(pot: dict, nncf: dict) -> bool:
    """Same request where both engines have the setting (schema defaults: performance, fast bias, whole set)."""
    same = (pot.get("preset", "performance") == nncf.get("preset", "performance")
            and bool(pot.get("use_fast_bias", True)) == bool(nncf.get("fast_bias_correction", True))
            and pot.get("stat_subset_size", "all") == nncf.get("subset_size", "all")
            and pot.get("target_device", "CPU") == nncf.get("target_device", "CPU"))
    if pot.get("algorithm") == "accuracy_aware":
        same = (same and float(pot.get("maximal_drop", 0.02)) == float(nncf.get("max_drop", 0.02))
                and nncf.get("drop_type", "absolute") == "absolute"
                and pot.get("validation", "labels") == nncf.get("validation", "labels")
                and not nncf.get("validation_count"))
    return same


def engine_comparison(table: pd.DataFrame, predictions, methods: dict, selected: list[str], *, seed: int = 0,
                      resamples: int = 9999, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (test set, model, calibration set, POT method, NNCF method) where both cells exist.

    ``table`` is the report's summary (INT8 rows with ``delta_top1``, ``agreement_with_fp32``, ``float_layers``,
    ``quantization_seconds``); ``predictions(test_set, model, calibration, method)`` gives (INT8 predictions,
    FP32 predictions, labels) of one cell.
    """
    int8 = table[table.precision == "int8"].set_index(["test_set", "model", "calibration", "method"])
    rows = []
    for pot_method, nncf_method in method_pairs(methods, selected):
        for test_set, model, calibration in sorted({key[:3] for key in int8.index if key[3] == pot_method}):
            if (test_set, model, calibration, nncf_method) not in int8.index:
                continue
            pot = int8.loc[(test_set, model, calibration, pot_method)]
            nncf = int8.loc[(test_set, model, calibration, nncf_method)]
            pot_predictions, fp32, labels = predictions(test_set, model, calibration, pot_method)
            nncf_predictions, _, _ = predictions(test_set, model, calibration, nncf_method)
            options = {"seed": seed, "resamples": resamples, "confidence": confidence}
            top1 = paired_difference(pot_predictions == labels, nncf_predictions == labels, **options)
            agreement = paired_difference(pot_predictions == fp32, nncf_predictions == fp32, **options)
            rows.append({
                "test_set": test_set, "model": model, "calibration": calibration,
                "algorithm": methods[pot_method].get("algorithm", "default"), "pot_method": pot_method,
                "nncf_method": nncf_method, "settings_match": settings_match(methods[pot_method], methods[nncf_method]),
                "pot_delta_top1": pot.delta_top1, "nncf_delta_top1": nncf.delta_top1,
                "pot_minus_nncf_top1": top1.estimate, "pot_minus_nncf_top1_ci_low": top1.ci_low,
                "pot_minus_nncf_top1_ci_high": top1.ci_high, "pot_minus_nncf_mcnemar_p": top1.mcnemar_p,
                "pot_only_correct": top1.a_only, "nncf_only_correct": top1.b_only,
                "pot_agreement": pot.agreement_with_fp32, "nncf_agreement": nncf.agreement_with_fp32,
                "pot_minus_nncf_agreement": agreement.estimate, "pot_minus_nncf_agreement_ci_low": agreement.ci_low,
                "pot_minus_nncf_agreement_ci_high": agreement.ci_high,
                "pot_float_layers": pot.get("float_layers"), "nncf_float_layers": nncf.get("float_layers"),
                "pot_seconds": pot.get("quantization_seconds"), "nncf_seconds": nncf.get("quantization_seconds"),
                "num_images": top1.n,
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def engine_comparison_html(comparison: pd.DataFrame, confidence: float = 0.95) -> str:
    """The report section's body: how to read it, then one line per pair of cells."""
    if comparison.empty:
        return "<p>No cell was quantized by both a POT and an NNCF method of the same algorithm.</p>"
    shown = pd.DataFrame({
        "test set": comparison.test_set, "model": comparison.model, "calibration": comparison.calibration,
        "POT method": comparison.pot_method, "NNCF method": comparison.nncf_method,
        "same settings": comparison.settings_match.map({True: "yes", False: "no"}),
        "POT Δ top-1 (pp)": [f"{value * 100:+.2f}" for value in comparison.pot_delta_top1],
        "NNCF Δ top-1 (pp)": [f"{value * 100:+.2f}" for value in comparison.nncf_delta_top1],
        "POT − NNCF (pp)": [f"{r.pot_minus_nncf_top1 * 100:+.2f} [{r.pot_minus_nncf_top1_ci_low * 100:+.2f}, "
                            f"{r.pot_minus_nncf_top1_ci_high * 100:+.2f}]" for r in comparison.itertuples()],
        "McNemar p": comparison.pot_minus_nncf_mcnemar_p,
        "POT / NNCF agreement %": [f"{r.pot_agreement * 100:.1f} / {r.nncf_agreement * 100:.1f}"
                                   for r in comparison.itertuples()],
        "float layers POT / NNCF": [f"{_count(r.pot_float_layers)} / {_count(r.nncf_float_layers)}"
                                    for r in comparison.itertuples()],
    })
    level = f"{confidence * 100:.0f} %"
    return ("<p>The 2022 study's quantizer (POT, openvino-dev 2023.3, run in the side environment) against NNCF "
            "on the same calibration sets. POT − NNCF: difference of INT8 top-1 on the same test images (= the "
            f"difference of their Δ top-1) with its paired bootstrap {level} interval and the exact McNemar "
            "p-value on the images only one of them gets right.</p>"
            f"<div class='wide'>{shown.to_html(index=False, escape=True, float_format=lambda v: f'{v:.3g}')}</div>")


def _count(value) -> str:
    return "–" if value is None or pd.isna(value) else str(int(value))


def engine_section(table: pd.DataFrame, predictions, methods: dict, selected: list[str], **options):
    """``(anchor, heading, html)`` for the report, or None when no POT method is in the study."""
    if not any(engine_of(methods.get(name)) == "pot" for name in selected):
        return None
    comparison = engine_comparison(table, predictions, methods, selected, **options)
    return ("engines", "POT vs NNCF on the same calibration sets",
            engine_comparison_html(comparison, options.get("confidence", 0.95)))
