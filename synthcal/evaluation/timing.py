"""The report's speed figures, measured where they can be trusted (rule time_model, alone on the machine).

One model at a time: its FP32 IR and the INT8 IR of each of its cells are compiled once and warmed up, then
timed interleaved. Every repeat passes the same test images once through every IR (the evaluator's own path:
``compile_model`` + ``infer_logits``) in a seeded shuffled order, and the next repeat in the reverse of that
order, so no IR always follows the same one and each IR's mean position is the same (an ABBA design: a slow
spell hits first and last alike). An IR's speed is the median of its repeats' images/s (wall clock). An INT8
IR's speed-up is the median of its per-repeat ratio to the FP32 pass of the same repeat, in the process's CPU
seconds per pass (every thread's): another process on the machine lengthens a pass's wall time but hardly its
CPU time, so speed-ups hold on a busy machine (issue 21: resnet20, eight fully quantized IRs, load average ~15
with a nice-19 busy loop beside: ±2.0 % around the median in CPU time, ±14.9 % in wall time). The wall-clock
ratio is kept as ``wall_speedup``. Every repeat's figure is kept, with the spread (min, max, quartiles).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

DEFAULT_REPEATS = 7
DEFAULT_IMAGES = 1000
FP32 = "fp32"
DESIGN = ("each repeat passes the same images once through every IR, in a seeded shuffled order, the next repeat in "
          "its reverse; speed = median wall-clock images/s over repeats; speed-up = median over repeats of FP32 / "
          "INT8 process CPU seconds of the same repeat (wall_speedup: the same in wall-clock images/s); low/high = "
          "lowest/highest repeat")


def interleaved_order(names: list[str], repeats: int, seed: int = 0) -> list[list[str]]:
    """The order of the IRs in each repeat: a seeded shuffle, then its reverse, and so on (ABBA)."""
    rng = np.random.default_rng(seed)
    order: list[list[str]] = []
    for repeat in range(repeats):
        order.append(order[-1][::-1] if repeat % 2 else [names[i] for i in rng.permutation(len(names))])
    return order


def spread(values) -> dict:
    """Median of per-repeat figures with their spread: min, max, quartiles, and both relative to the median."""
    values = np.asarray(values, dtype=float)
    median = float(np.median(values))
    q1, q3 = (float(q) for q in np.percentile(values, [25, 75]))
    return {"repeats": values.tolist(), "median": median, "min": float(values.min()), "max": float(values.max()),
            "q1": q1, "q3": q3, "relative_iqr": (q3 - q1) / median, "relative_range": float(np.ptp(values)) / median}


def consistency(speedups) -> tuple[float, float]:
    """(median, largest relative deviation from it) of speed-ups that should agree, e.g. the cells with every
    layer in INT8 (the same graph in kind)."""
    values = np.asarray(list(speedups), dtype=float)
    median = float(np.median(values))
    return median, float(np.abs(values / median - 1).max())


def timing_record(model: str, irs: list[dict], images_per_second: dict[str, list[float]], *, order: list[list[str]],
                  images: int, batch_size: int, precision_hint: str, seed: int, runtime: dict | None = None,
                  seconds: float | None = None, cpu_seconds: dict[str, list[float]] | None = None) -> dict:
    """The ``results/timing/{model}.json`` record from per-repeat images/s of every IR (index = repeat).

    ``irs``: ``Study.timed_irs(model)`` (name, precision, calibration, method, xml), FP32 first. ``cpu_seconds``:
    each pass's process CPU time; speed-ups come from it where given, else from the wall-clock images/s.
    """
    fp32 = np.asarray(images_per_second[FP32], dtype=float)
    fp32_cpu = np.asarray(cpu_seconds[FP32], dtype=float) if cpu_seconds else None
    entries = {}
    for ir in irs:
        speeds = np.asarray(images_per_second[ir["name"]], dtype=float)
        entry = {key: ir[key] for key in ("precision", "calibration", "method")} | {"ir": str(ir["xml"])}
        entry["images_per_second"] = spread(speeds)
        if cpu_seconds:
            entry["cpu_seconds"] = spread(cpu_seconds[ir["name"]])
        if ir["name"] != FP32:
            entry["wall_speedup"] = spread(speeds / fp32)
            entry["speedup"] = (spread(fp32_cpu / np.asarray(cpu_seconds[ir["name"]], dtype=float)) if cpu_seconds
                                else entry["wall_speedup"])
        entries[ir["name"]] = entry
    return {"model": model, "design": DESIGN, "repeats": len(order), "images": images, "batch_size": batch_size,
            "precision_hint": precision_hint or "default", "seed": seed, "order": order, "irs": entries,
            "machine": machine_facts() | {"runtime": runtime or {}}, "seconds": seconds}


def machine_facts() -> dict:
    import openvino as ov

    facts = {"openvino": ov.get_version(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
             "processor": platform.processor() or platform.machine()}
    if hasattr(os, "sched_getaffinity"):
        facts["usable_cpus"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        facts["load_average"] = list(os.getloadavg())
    return facts


def _runtime_properties(compiled) -> dict:
    """How OpenVINO runs the compiled FP32 model (performance hint, streams, threads, requests)."""
    properties = {}
    for name in ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
                 "INFERENCE_PRECISION_HINT"):
        try:
            value = compiled.get_property(name)
            properties[name] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        except RuntimeError:  # not reported by this device or version
            continue
    return properties


def time_irs(model: str, irs: list[dict], images: np.ndarray, *, repeats: int = DEFAULT_REPEATS,
             batch_size: int = 100, precision_hint: str = "f32", seed: int = 0, show_progress: bool = True) -> dict:
    """Time every IR of ``irs`` (``Study.timed_irs``) interleaved on uint8 NHWC ``images``; returns the record."""
    from tqdm import tqdm

    from synthcal.inference import REQUEST_PIXELS, batch_within, compile_model, infer_logits, read_ir
    from synthcal.models.preprocessing import ir_input_size, resize_images, resize_policy

    names = [ir["name"] for ir in irs]
    if names.count(FP32) != 1 or len(set(names)) != len(names):
        raise ValueError(f"time_irs needs one {FP32!r} IR and unique names, got {names}")
    if repeats < 1 or not len(images):
        raise ValueError(f"nothing to time: {repeats} repeats of {len(images)} images")
    started = time.perf_counter()
    compiled, inputs, resized = {}, {}, {}
    for ir in tqdm(irs, desc="compile", unit="IR", disable=not show_progress):
        network = read_ir(ir["xml"])
        key = (ir_input_size(network), resize_policy(network))  # all IRs of a model share it; resize once
        if key not in resized:
            resized[key] = resize_images(images, *key)
        compiled[ir["name"]] = compile_model(network, precision_hint, uint8_images=True)
        inputs[ir["name"]] = resized[key]
    height, width = next(iter(resized.values())).shape[1:3]
    batch_size = batch_within(batch_size, height, width, REQUEST_PIXELS)
    for name in names:
        infer_logits(compiled[name], inputs[name], batch_size)  # warm-up pass, not timed
    order = interleaved_order(names, repeats, seed)
    images_per_second: dict[str, list[float]] = {name: [] for name in names}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in names}
    with tqdm(total=repeats * len(names), desc=f"time {model}", unit="pass", disable=not show_progress) as bar:
        for repeat_order in order:
            for name in repeat_order:
                pass_started, cpu_started = time.perf_counter(), time.process_time()
                infer_logits(compiled[name], inputs[name], batch_size)
                images_per_second[name].append(len(images) / (time.perf_counter() - pass_started))
                cpu_seconds[name].append(time.process_time() - cpu_started)
                bar.update()
    return timing_record(model, irs, images_per_second, order=order, images=len(images), batch_size=batch_size,
                         precision_hint=precision_hint, seed=seed, runtime=_runtime_properties(compiled[FP32]),
                         seconds=time.perf_counter() - started, cpu_seconds=cpu_seconds)


def time_model_from_files(model: str, irs: list[dict], test_path, output_path, options: dict) -> dict:
    """Workflow entry (rule time_model): the first ``options['images']`` test images, the record to ``output_path``."""
    from synthcal.io import load_image_set, write_json

    for ir in irs:
        if not Path(ir["xml"]).is_file():
            raise FileNotFoundError(f"IR to time not found: {ir['xml']}")
    test = load_image_set(test_path, stream=True)  # only the first images are read
    count = min(int(options.get("images", DEFAULT_IMAGES)), len(test))
    record = time_irs(model, irs, test.images[:count], repeats=int(options.get("repeats", DEFAULT_REPEATS)),
                      batch_size=int(options.get("batch_size", 100)),
                      precision_hint=options.get("precision_hint", "f32"), seed=int(options.get("seed", 0)))
    write_json(output_path, record)
    return record
