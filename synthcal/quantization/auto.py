"""Method ``auto``: the INT8 recipe chosen without one real image.

Per model and calibration set, a few candidate NNCF recipes (fast vs full bias correction, activation range
estimators, overflow fix, GPTQ weight rounding ahead of NNCF, ...; every layer stays INT8) each quantize the FP32 IR
on the calibration set. Each is scored by a proxy that needs no real image: how closely the INT8 model follows the
FP32 model on *held-out synthetic* images (a second calibration entry named by the method's ``holdout`` key, e.g.
a data-free set with another seed). The candidate with the best proxy is the cell's ``int8.xml``; every
candidate's IR is kept under ``candidates/<id>/`` so that a later job (rule ``evaluate_auto_candidates``) can
measure them on the real test sets (the oracle the user does not have). The choice is written to
``quantize.json`` before any test image is read.

A cell calibrated on real images (kinds ``REAL_DATA_KINDS``) may score its candidates on held-out *real* images
instead (the method's ``real_holdout`` key): what a user who has real data would do, so that the study can set
``auto`` on real images beside ``auto`` without them. Holdout images identical to a calibration image are left out
of the proxy (counted in ``quantize.json``): two seeded subsets of one training pool share images.

Proxy: mean KL divergence of the INT8 softmax from the FP32 softmax over the held-out images (lower is better;
top-1 agreement on them is recorded too, and breaks nothing: on 1,000 images it moves in steps of 0.1 pp and ties
between good recipes, while the divergence keeps ranking them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from synthcal.calibration import REAL_DATA_KINDS
from synthcal.io import ImageSet, write_json
from synthcal.quantization.weight_rounding import GPTQ_DAMP

# NNCF's RangeEstimatorParametersSet members by config name (NNCF itself is imported by the jobs only)
RANGE_ESTIMATORS = {
    "minmax": "MINMAX",
    "mean_minmax": "MEAN_MINMAX",
    "median_minmax": "MEDIAN_MINMAX",
    "mean_no_outliers_minmax": "MEAN_NO_OUTLIERS_MINMAX",
    "mean_quantile": "MEAN_QUANTILE",
    "histogram": "HISTOGRAM",
}


class AutoMethodError(ValueError):
    """A bad ``algorithm: auto`` method entry; the message names the key."""


# What a candidate may set (absent = NNCF's default recipe as the `default` method runs it):
CANDIDATE_KEYS = {
    "id": "name of the candidate (folder under candidates/)",
    "preset": "performance | mixed",
    "fast_bias_correction": "true (FastBiasCorrection) | false (full BiasCorrection)",
    "activations_range": f"activation range estimator: {' | '.join(RANGE_ESTIMATORS)} (default: NNCF's min-max)",
    "overflow_fix": "enable | disable | first_layer_only (NNCF's default: first_layer_only)",
    "bias_correction_images": "full bias correction: 'all' images (this method's default) or NNCF's 'fifth'",
    "subset_size": "all (default) or a number of images for the statistics",
    "augment": "flip: the calibration images and their mirror images (twice the statistics, no new image)",
    "weight_rounding": "gptq: weights rounded by GPTQ on the calibration images before NNCF "
                       "(synthcal.quantization.weight_rounding; needs overflow_fix: disable)",
    "gptq_damp": "GPTQ's dampening: share of the mean input second moment added to the diagonal (default 0.1)",
}

# Few, each a full NNCF run (the method's cost). On resnet20 / datafree (jpeg10k agreement; README, "The auto
# method"): fast 97.0 %, full bias correction (`default_full_bc`) 98.2 %, + histogram ranges and 8-bit weights
# everywhere 98.3 % (mixed preset: the same), + GPTQ weight rounding 98.7 %. GPTQ gained on all three offline
# networks (+0.2 to +0.5 pp) where the earlier histogram candidates (with and without the mixed preset, bias
# correction over every image) did not beat each other beyond the proxy's noise; with GPTQ, bias correction over
# NNCF's fifth of the images equals every image at half the time. `fast` is the `default` recipe: the cheap check.
DEFAULT_CANDIDATES = [
    {"id": "fast", "fast_bias_correction": True},
    {"id": "gptq_histogram", "fast_bias_correction": False, "activations_range": "histogram",
     "overflow_fix": "disable", "bias_correction_images": "fifth", "weight_rounding": "gptq"},
]

PROXIES = ("kl", "agreement")


def candidates_of(method_name: str, method: dict) -> list[dict]:
    """The method's candidate list (default: DEFAULT_CANDIDATES), checked: known keys and values, unique ids."""
    candidates = method.get("candidates") or DEFAULT_CANDIDATES
    seen: set[str] = set()
    for index, candidate in enumerate(candidates):
        where = f"methods.{method_name}.candidates[{index}]"
        if not isinstance(candidate, dict):
            raise AutoMethodError(f"{where} must be a mapping of {sorted(CANDIDATE_KEYS)}")
        unknown = sorted(set(candidate) - set(CANDIDATE_KEYS))
        if unknown:
            raise AutoMethodError(f"{where} has unknown key(s) {unknown}; allowed: {sorted(CANDIDATE_KEYS)}")
        identifier = str(candidate.get("id", ""))
        if not re.fullmatch(r"[\w-]+", identifier):
            raise AutoMethodError(f"{where}.id must be a non-empty name of letters, digits, '_' or '-'")
        if identifier in seen:
            raise AutoMethodError(f"{where}.id {identifier!r} is used twice")
        seen.add(identifier)
        checks = {
            "preset": ("performance", "mixed"), "activations_range": tuple(RANGE_ESTIMATORS),
            "overflow_fix": ("enable", "disable", "first_layer_only"), "bias_correction_images": ("all", "fifth"),
            "fast_bias_correction": (True, False), "augment": ("flip",), "weight_rounding": ("gptq",),
        }
        for key, allowed in checks.items():
            if key in candidate and candidate[key] not in allowed:
                raise AutoMethodError(f"{where}.{key} is {candidate[key]!r}, not one of {list(allowed)}")
        if "weight_rounding" in candidate and candidate.get("overflow_fix") != "disable":
            raise AutoMethodError(f"{where}.weight_rounding needs overflow_fix: disable (NNCF's default 7-bit first "
                                  "layer would round the weights again on another grid)")
        damp = candidate.get("gptq_damp", GPTQ_DAMP)
        if "gptq_damp" in candidate and "weight_rounding" not in candidate:
            raise AutoMethodError(f"{where}.gptq_damp is set without weight_rounding: gptq")
        if isinstance(damp, bool) or not isinstance(damp, (int, float)) or not damp > 0:
            raise AutoMethodError(f"{where}.gptq_damp must be a positive number, got {damp!r}")
        subset = candidate.get("subset_size", "all")
        if subset != "all" and not (isinstance(subset, int) and subset >= 1):
            raise AutoMethodError(f"{where}.subset_size must be 'all' or a positive number, got {subset!r}")
    if method.get("proxy", "kl") not in PROXIES:
        raise AutoMethodError(f"methods.{method_name}.proxy {method.get('proxy')!r} is not one of {PROXIES}")
    return [dict(candidate) for candidate in candidates]


def check_auto_method(method_name: str, method: dict, calibration_entries: dict, calibrations: list[str]) -> None:
    """Before any job: the candidates, and a ``holdout`` that names a synthetic set other than the cell's own."""
    candidates_of(method_name, method)
    holdout = method.get("holdout")
    if not holdout:
        raise AutoMethodError(f"methods.{method_name}.holdout must name a calibration entry: the held-out synthetic "
                                "images the proxy scores candidates on (e.g. a second datafree set, another seed)")
    if holdout not in calibration_entries:
        raise AutoMethodError(f"methods.{method_name}.holdout names {holdout!r}, which is not defined under "
                                f"`calibration:` (defined: {sorted(calibration_entries)})")
    kind = calibration_entries[holdout].get("kind")
    if kind in REAL_DATA_KINDS:
        raise AutoMethodError(f"methods.{method_name}.holdout {holdout!r} is kind {kind}: real images; the proxy "
                                "must need no real image (use a datafree, gan, fractal or noise set)")
    if holdout in calibrations:
        raise AutoMethodError(f"methods.{method_name}.holdout {holdout!r} is also a calibration set of the study: "
                                "the proxy needs images no candidate was calibrated on")
    _refuse_same_content(method_name, "holdout", holdout, calibration_entries, calibrations)
    real_holdout = method.get("real_holdout")
    if real_holdout is None:
        return
    real_sets = sorted(name for name, entry in calibration_entries.items()
                       if (entry or {}).get("kind") in REAL_DATA_KINDS and name not in calibrations)
    if real_holdout not in calibration_entries:
        raise AutoMethodError(f"methods.{method_name}.real_holdout names {real_holdout!r}, which is not defined under "
                              f"`calibration:` (real-data entries outside the study: {real_sets})")
    kind = calibration_entries[real_holdout].get("kind")
    if kind not in REAL_DATA_KINDS:
        raise AutoMethodError(f"methods.{method_name}.real_holdout {real_holdout!r} is kind {kind}, not real images "
                              f"(kinds {', '.join(REAL_DATA_KINDS)}); real-data entries outside the study: {real_sets}")
    if real_holdout in calibrations:
        raise AutoMethodError(f"methods.{method_name}.real_holdout {real_holdout!r} is also a calibration set of the "
                              "study: the proxy needs images no candidate was calibrated on")
    _refuse_same_content(method_name, "real_holdout", real_holdout, calibration_entries, calibrations)


def entry_digest(entry: dict) -> str:
    """sha256 of a calibration entry's settings: equal digests make equal images (every kind is seeded)."""
    return hashlib.sha256(json.dumps(entry or {}, sort_keys=True, default=str).encode()).hexdigest()


def _refuse_same_content(method_name: str, key: str, holdout: str, calibration_entries: dict,
                         calibrations: list[str]) -> None:
    """A holdout entry that makes the same images as a study set under another name is refused, naming both."""
    digest = entry_digest(calibration_entries[holdout])
    for name in calibrations:
        if name in calibration_entries and entry_digest(calibration_entries[name]) == digest:
            raise AutoMethodError(f"methods.{method_name}.{key} {holdout!r} has the same settings as "
                                  f"calibration.{name}, a calibration set of the study (settings sha256 "
                                  f"{digest[:12]}): the same images under another name; the proxy needs images no "
                                  "candidate was calibrated on (change its seed)")


def image_set_digest(image_set: ImageSet) -> str:
    """sha256 of a set's pixels (shape included)."""
    images = np.ascontiguousarray(image_set.images)
    return hashlib.sha256(f"{images.shape}".encode() + images.tobytes()).hexdigest()


def check_holdout_content(method_name: str, method: dict, calibration: ImageSet, holdout: ImageSet,
                          shared_images: int) -> None:
    """At job time, on the images themselves: a holdout whose every image is also a calibration image (the same
    set, by digest, or a subset of it) leaves the proxy nothing held out; refused, naming both config keys."""
    if shared_images < len(holdout) or not len(holdout):
        return
    holdout_name, calib_name = holdout.provenance.get("name"), calibration.provenance.get("name")
    key = "real_holdout" if holdout_name and holdout_name == method.get("real_holdout") else "holdout"
    same = image_set_digest(holdout) == image_set_digest(calibration)
    what = (f"the same images as calibration.{calib_name} (sha256 {image_set_digest(holdout)[:12]})" if same else
            f"only images that are also in calibration.{calib_name} ({shared_images} of {len(holdout)})")
    raise AutoMethodError(f"methods.{method_name}.{key} {holdout_name!r} holds {what}, the cell's calibration set: "
                          "the proxy needs images no candidate was calibrated on (another seed or other files)")


def holdout_of(method: dict, calibration_kind: str | None) -> str:
    """The calibration entry whose images score a cell's candidates: ``real_holdout`` where the cell is calibrated
    on real images and the method names one, else ``holdout``."""
    if calibration_kind in REAL_DATA_KINDS and method.get("real_holdout"):
        return method["real_holdout"]
    return method["holdout"]


def without_calibration_images(holdout: ImageSet, calibration: ImageSet) -> tuple[ImageSet, int]:
    """The holdout less every image identical (pixel for pixel) to a calibration image, and how many went."""
    seen = {image.tobytes() for image in calibration.images}
    keep = np.array([image.tobytes() not in seen for image in holdout.images], dtype=bool)
    if keep.all():
        return holdout, 0
    return ImageSet(holdout.images[keep], holdout.labels[keep], holdout.provenance), int((~keep).sum())


def _candidate_parameters(candidate: dict, num_images: int) -> tuple[dict, dict]:
    from synthcal.quantization.nncf_engine import nncf

    RangeEstimatorParametersSet = nncf.quantization.range_estimator.RangeEstimatorParametersSet  # noqa: N806
    subset = num_images if candidate.get("subset_size", "all") == "all" else min(candidate["subset_size"], num_images)
    fast = bool(candidate.get("fast_bias_correction", True))
    arguments = {
        "preset": nncf.QuantizationPreset(candidate.get("preset", "performance")),
        "target_device": nncf.TargetDevice.CPU,
        "subset_size": subset,
        "fast_bias_correction": fast,
    }
    advanced: dict = {}
    if "activations_range" in candidate:
        advanced["activations_range_estimator_params"] = getattr(RangeEstimatorParametersSet,
                                                                 RANGE_ESTIMATORS[candidate["activations_range"]])
    if "overflow_fix" in candidate:
        advanced["overflow_fix"] = nncf.OverflowFix(candidate["overflow_fix"])
    return arguments, advanced


def _bias_correction_reads_every_image(candidate: dict) -> bool:
    return not candidate.get("fast_bias_correction", True) and candidate.get("bias_correction_images", "all") == "all"


def mirrored_pairs(images: np.ndarray) -> np.ndarray:
    """NHWC images with each one's left-right mirror image right after it (a subset keeps the pairs together)."""
    return np.stack([images, images[:, :, ::-1]], axis=1).reshape(-1, *images.shape[1:])


def quantize_candidate(model, images: np.ndarray, candidate: dict) -> tuple:
    """One candidate recipe on the calibration images, NNCF's items made by ``per_image_items`` (statistics per image).
    Returns the quantized ``ov.Model`` and the arguments NNCF got."""
    from synthcal.quantization.nncf_engine import nncf, per_image_items, without_torch

    if candidate.get("augment") == "flip":
        images = mirrored_pairs(images)
    arguments, advanced = _candidate_parameters(candidate, len(images))
    used = arguments["subset_size"]
    rounding = None
    if candidate.get("weight_rounding") == "gptq":
        from synthcal.quantization.weight_rounding import round_weights

        start = time.perf_counter()
        damp = float(candidate.get("gptq_damp", GPTQ_DAMP))
        model, integers, scales = round_weights(model, images[:used], damp)
        rounding = {"method": "gptq", "damp": damp, "layers": len(integers), "images": used,
                    "seconds": time.perf_counter() - start}
    items = per_image_items(images, used)
    arguments["subset_size"] = len(items)
    if _bias_correction_reads_every_image(candidate):
        # NNCF's full BiasCorrection reads the first fifth of subset_size items; a five-fold subset_size over the
        # same items lets it read every calibration image (range statistics still see each image once)
        arguments["subset_size"] *= 5
    with without_torch():
        quantized = nncf.quantize(model, nncf.Dataset(items), **arguments,
                                  advanced_parameters=nncf.AdvancedQuantizationParameters(batchwise_statistics=True,
                                                                                          **advanced))
    recorded = {key: str(value) for key, value in arguments.items()}
    recorded.update(statistics_images=used, statistics_batch=items.per_item,
                    advanced={key: str(value) for key, value in advanced.items()})
    if rounding is not None:
        from synthcal.quantization.weight_rounding import grid_match

        rounding["grid_match"] = grid_match(quantized, integers, scales)  # how much of GPTQ's rounding the IR holds
        recorded["weight_rounding"] = rounding
    return quantized, recorded


def proxy_scores(fp32_logits: np.ndarray, int8_logits: np.ndarray) -> dict:
    """How closely INT8 follows FP32 on the same (synthetic) images: top-1 agreement, mean softmax KL(FP32‖INT8),
    mean squared logit difference."""
    fp32_logits, int8_logits = (np.asarray(x, dtype=np.float64) for x in (fp32_logits, int8_logits))
    log_p = fp32_logits - np.logaddexp.reduce(fp32_logits, axis=1, keepdims=True)
    log_q = int8_logits - np.logaddexp.reduce(int8_logits, axis=1, keepdims=True)
    return {
        "agreement": float((fp32_logits.argmax(1) == int8_logits.argmax(1)).mean()),
        "kl": float((np.exp(log_p) * (log_p - log_q)).sum(1).mean()),
        "logit_mse": float(((fp32_logits - int8_logits) ** 2).mean()),
    }


def choose(scores: list[dict], proxy: str = "kl") -> int:
    """Index of the best candidate: lowest KL (ties: higher agreement), or highest agreement (ties: lower KL);
    remaining ties go to the earlier candidate."""
    if proxy == "kl":
        keys = [(score["kl"], -score["agreement"]) for score in scores]
    else:
        keys = [(-score["agreement"], score["kl"]) for score in scores]
    return min(range(len(scores)), key=lambda index: (keys[index], index))


def quantize_auto(fp32_xml: str | os.PathLike, calibration: ImageSet, holdout: ImageSet, method_name: str,
                  method: dict, int8_xml: str | os.PathLike, info_path: str | os.PathLike,
                  candidates_dir: str | os.PathLike, *, precision_hint: str = "f32") -> dict:
    """Quantize every candidate, score each on the held-out synthetic images, keep the best as ``int8_xml``.

    Reads no test image: its inputs are the FP32 IR, the calibration set and the held-out synthetic set.
    """
    import openvino as ov

    from synthcal.inference import compile_model, infer_logits, read_ir
    from synthcal.models.export import save_ir
    from synthcal.quantization.ir import fake_quantize_count, float_compute_layers
    from synthcal.quantization.nncf_engine import nncf

    candidates = candidates_of(method_name, method)
    proxy = method.get("proxy", "kl")
    kept, shared_images = without_calibration_images(holdout, calibration)
    check_holdout_content(method_name, method, calibration, holdout, shared_images)
    holdout = kept
    if len(calibration) == 0 or len(holdout) == 0:
        raise AutoMethodError(f"methods.{method_name}: the calibration set and the holdout set need images "
                                f"(got {len(calibration)} and {len(holdout)})")
    model = read_ir(fp32_xml)
    start = time.perf_counter()
    fp32_logits = infer_logits(compile_model(model, precision_hint), holdout.images)
    reference_seconds = time.perf_counter() - start
    candidates_dir = Path(candidates_dir)
    if candidates_dir.exists():
        shutil.rmtree(candidates_dir)
    records, models = [], []
    for candidate in candidates:
        start = time.perf_counter()
        quantized, arguments = quantize_candidate(model, calibration.images, candidate)
        quantize_seconds = time.perf_counter() - start
        start = time.perf_counter()
        scores = proxy_scores(fp32_logits, infer_logits(compile_model(quantized, precision_hint), holdout.images))
        ir = candidates_dir / candidate["id"] / "int8.xml"
        save_ir(quantized, ir)
        records.append({
            "id": candidate["id"], "recipe": candidate, "nncf_arguments": arguments,
            "proxy": scores, "quantization_seconds": quantize_seconds,
            "proxy_seconds": time.perf_counter() - start,
            "float_layers": float_compute_layers(quantized), "fake_quantize_count": fake_quantize_count(quantized),
            "ir": str(ir),
        })
        models.append(quantized)
    chosen = choose([record["proxy"] for record in records], proxy)
    save_ir(models[chosen], int8_xml)
    info = {
        "method": method_name, "engine": "nncf", "algorithm": "auto",
        "config": method, "nncf_version": nncf.__version__, "openvino_version": ov.get_version(),
        "calibration_set": calibration.provenance, "calibration_images_available": len(calibration),
        "calibration_samples_used": len(calibration),
        "holdout_set": holdout.provenance, "holdout_images": len(holdout),
        "holdout_images_left_out": shared_images,  # identical to a calibration image
        "proxy": proxy, "chosen": records[chosen]["id"], "candidates": records,
        "reference_seconds": reference_seconds,
        "quantization_seconds": sum(r["quantization_seconds"] + r["proxy_seconds"] for r in records)
        + reference_seconds,
        "float_layers": records[chosen]["float_layers"], "fake_quantize_count": records[chosen]["fake_quantize_count"],
        "reads_test_images": False,
    }
    write_json(info_path, info)
    return info


def quantize_auto_from_files(method_name: str, method: dict, inputs, outputs, precision_hint: str = "f32") -> dict:
    """Workflow entry (rule quantize_auto): FP32 IR, calibration and holdout sets in; int8.xml, quantize.json and
    candidates/ out."""
    from synthcal.io import load_image_set

    return quantize_auto(inputs.xml, load_image_set(inputs.calibration), load_image_set(inputs.holdout),
                         method_name, method, outputs.xml, outputs.info, outputs.candidates,
                         precision_hint=precision_hint)
