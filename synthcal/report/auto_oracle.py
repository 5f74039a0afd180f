"""``auto_vs_oracle.csv`` and its page section: method ``auto``'s pick against the best candidate on real images.

``auto`` picks a recipe by a proxy on held-out synthetic images (synthcal/quantization/auto.py); the user cannot
check the pick. Here every candidate has been evaluated on the real test sets (rule ``evaluate_auto_candidates``),
so per auto cell and test set the report states: the pick's agreement with FP32 and Δ top-1 (intervals), the
oracle's (the candidate with the highest real agreement), their paired difference in agreement (bootstrap interval,
exact McNemar p), the pick against ``default_full_bc`` on the same calibration set where the study has that cell,
and Kendall's τ between the proxy and the real agreement over the candidates.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
from scipy import stats

from synthcal.evaluation.stats import CONFIDENCE, RESAMPLES, paired_difference, versus_reference, wilson_rate
from synthcal.io import atomic_path, read_json


def _proxy_goodness(record: dict, proxy: str) -> float:
    """Higher = better by the proxy the method chose with (so τ > 0 means the proxy ranks like the real data)."""
    scores = record["proxy"]
    return scores["agreement"] if proxy == "agreement" else -scores["kl"]


def oracle_row(record: dict, *, seed: int = 0, resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> dict:
    """One auto cell on one test set (``record`` as ``Study.auto_oracle_records`` gives it)."""
    info = read_json(record["quantize"])
    with np.load(record["candidates"]) as data:
        ids, predictions, labels = [str(x) for x in data["candidates"]], data["predictions"], data["labels"]
    with np.load(record["fp32"]) as data:
        fp32 = data["predictions"]
    candidates = {candidate["id"]: candidate for candidate in info["candidates"]}
    if ids != list(candidates):
        raise ValueError(f"{record['candidates']} holds candidates {ids}, {record['quantize']} lists "
                         f"{list(candidates)}: re-run rule evaluate_auto_candidates")
    agreeing = predictions == fp32[None, :]
    real = agreeing.mean(1)
    pick, oracle = ids.index(info["chosen"]), int(np.argmax(real))  # ties: the earlier candidate
    options = {"seed": seed, "resamples": resamples, "confidence": confidence}
    row = {"model": record["model"], "calibration": record["calibration"], "method": record["method"],
           "test_set": record["test_set"], "images": len(labels), "candidates": len(ids),
           "auto_seconds": info["quantization_seconds"], "proxy": info["proxy"],
           "holdout_images": info["holdout_images"]}
    for prefix, index in (("pick", pick), ("oracle", oracle)):
        versus = versus_reference(predictions[index], fp32, labels, **options)
        row.update({f"{prefix}": ids[index], f"{prefix}_agreement": versus["agreement_with_fp32"],
                    f"{prefix}_agreement_ci_low": versus["agreement_ci_low"],
                    f"{prefix}_agreement_ci_high": versus["agreement_ci_high"],
                    f"{prefix}_delta_top1": versus["delta_top1"], f"{prefix}_delta_top1_ci_low":
                        versus["delta_top1_ci_low"], f"{prefix}_delta_top1_ci_high": versus["delta_top1_ci_high"],
                    f"{prefix}_float_layers": len(candidates[ids[index]]["float_layers"])})
    versus_oracle = paired_difference(agreeing[pick], agreeing[oracle], **options)
    row.update({"pick_minus_oracle": versus_oracle.estimate, "pick_minus_oracle_ci_low": versus_oracle.ci_low,
                "pick_minus_oracle_ci_high": versus_oracle.ci_high, "pick_vs_oracle_mcnemar_p": versus_oracle.mcnemar_p,
                "pick_vs_oracle_distinguishable": versus_oracle.distinguishable})
    goodness = [_proxy_goodness(candidates[candidate], info["proxy"]) for candidate in ids]
    tau = stats.kendalltau(goodness, real) if len(ids) > 1 else None
    row.update({"kendall_tau": float(tau.statistic) if tau is not None else float("nan"),
                "kendall_p": float(tau.pvalue) if tau is not None else float("nan")})
    baseline = record.get("baseline")
    if baseline:
        with np.load(baseline) as data:
            baseline_agreeing = data["predictions"] == fp32
        versus_baseline = paired_difference(agreeing[pick], baseline_agreeing, **options)
        rate = wilson_rate(int(baseline_agreeing.sum()), len(baseline_agreeing), confidence)
        row.update({"baseline": record.get("baseline_method", "default_full_bc"), "baseline_agreement": rate.estimate,
                    "pick_minus_baseline": versus_baseline.estimate,
                    "pick_minus_baseline_ci_low": versus_baseline.ci_low,
                    "pick_minus_baseline_ci_high": versus_baseline.ci_high,
                    "pick_vs_baseline_mcnemar_p": versus_baseline.mcnemar_p})
    row["candidates_real_agreement"] = "; ".join(f"{candidate} {value:.4f}" for candidate, value in zip(ids, real,
                                                                                                         strict=True))
    proxies = {candidate: candidates[candidate]["proxy"] for candidate in ids}
    row["candidates_proxy"] = "; ".join(f"{candidate} kl {score['kl']:.5f} agreement {score['agreement']:.4f}"
                                        for candidate, score in proxies.items())
    return row


def auto_vs_oracle_table(records: list[dict], report: dict | None = None, seed: int = 0) -> pd.DataFrame:
    report = report or {}
    options = {"seed": int(seed), "resamples": int(report.get("bootstrap_resamples", RESAMPLES)),
               "confidence": float(report.get("confidence", CONFIDENCE))}
    return pd.DataFrame([oracle_row(record, **options) for record in records])


def write_auto_vs_oracle(records: list[dict], csv_path, report: dict | None = None, seed: int = 0) -> pd.DataFrame:
    """Workflow entry (rule auto_vs_oracle)."""
    table = auto_vs_oracle_table(records, report, seed)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table


def _pp(value: float) -> str:
    return f"{value * 100:+.2f}"


def auto_oracle_section(csv_path) -> tuple[str, str, str] | None:
    """The page's section (anchor, title, html) from auto_vs_oracle.csv; None without auto cells."""
    if not csv_path:
        return None
    table = pd.read_csv(str(csv_path[0] if isinstance(csv_path, list | tuple) else csv_path))
    return ("auto", "Method auto: the recipe chosen without real images, against the oracle", auto_oracle_html(table))


def auto_oracle_html(table: pd.DataFrame) -> str:
    """The section's text and table: one row per auto cell and test set, several figures per cell so that the table
    fits the page (every column in auto_vs_oracle.csv)."""
    if table is None or table.empty:
        return ""
    lines = []
    for row in table.itertuples():
        baseline = "–"
        if isinstance(getattr(row, "baseline", None), str):
            baseline = (f"{_pp(row.pick_minus_baseline)} pp <small>[{_pp(row.pick_minus_baseline_ci_low)}, "
                        f"{_pp(row.pick_minus_baseline_ci_high)}]</small><br><small>p = "
                        f"{row.pick_vs_baseline_mcnemar_p:.2g}</small>")
        lines.append("<tr>" + "".join(f"<td>{value}</td>" for value in (
            f"<b>{html.escape(f'{row.model} / {row.calibration} / {row.method}')}</b><br>{html.escape(row.test_set)}",
            f"<b>{html.escape(row.pick)}</b><br>{row.pick_agreement * 100:.2f} % <small>["
            f"{row.pick_agreement_ci_low * 100:.2f}, {row.pick_agreement_ci_high * 100:.2f}]</small><br>Δ top-1 "
            f"{_pp(row.pick_delta_top1)} pp",
            f"<b>{html.escape(row.oracle)}</b><br>{row.oracle_agreement * 100:.2f} %",
            f"{_pp(row.pick_minus_oracle)} pp <small>[{_pp(row.pick_minus_oracle_ci_low)}, "
            f"{_pp(row.pick_minus_oracle_ci_high)}]</small><br><small>p = {row.pick_vs_oracle_mcnemar_p:.2g}</small>",
            baseline, f"{row.kendall_tau:+.2f}", f"{row.auto_seconds:.0f} s")) + "</tr>")
    header = "".join(f"<th>{name}</th>" for name in (
        "cell · test set", "pick (proxy): agreement, Δ top-1", "oracle (best on real test images)",
        "pick − oracle (agreement)", "pick − default_full_bc (agreement)", "Kendall τ proxy/real", "auto time"))
    return ("<p><code>auto</code> quantizes a few candidate NNCF recipes (GPTQ weight rounding ahead of NNCF in the "
            "default one) and keeps the one whose INT8 model follows FP32 most closely (softmax KL) on held-out "
            "images: synthetic ones, or held-out real training images in a cell calibrated on real images where the "
            "method names a <code>real_holdout</code>; no test image is read for the choice. "
            "Here every candidate is evaluated on the real test sets: the oracle is the candidate a user with test "
            "images would have picked. Differences are paired (bootstrap interval, exact McNemar p); τ is the "
            "rank correlation between proxy and real agreement over the candidates "
            "(<code>auto_vs_oracle.csv</code>).</p>"
            f"<div class='wide'><table class='fit'><thead><tr>{header}</tr></thead><tbody>{''.join(lines)}</tbody>"
            "</table></div>")
