"""How far apart the timing step puts cells that run the same graph in kind: per model, the speed-ups of the INT8
cells with every layer in INT8 (no float layers in quantize.json), their median, and each one's deviation from
it; the issue's bar is ±10 % (issue 21: ±5 % with a CPU-bound process at nice 19 beside the study). Speed-ups are
in process CPU time since issue 21; the wall-clock ones (``wall_speedup``) are shown beside where recorded. Reads a
finished run's results (rule time_model's results/timing/{model}.json).

    .venv/bin/python benchmarks/speedup_consistency.py [--results results] [--tolerance 0.10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synthcal.evaluation.timing import consistency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--tolerance", type=float, default=0.10)
    args = parser.parse_args()
    timings = sorted((args.results / "timing").glob("*.json"))
    if not timings:
        print(f"no timing files under {args.results / 'timing'} (run rule time_model first)")
        return 1
    worst_overall = 0.0
    for path in timings:
        timing = json.loads(path.read_text())
        model = timing["model"]
        print(f"{model}: {timing['repeats']} repeats × {timing['images']} images, batch {timing['batch_size']}, "
              f"{timing['machine'].get('usable_cpus', timing['machine']['cpu_count'])} CPUs, "
              f"{timing['machine']['runtime'].get('PERFORMANCE_HINT', '?')} "
              f"({timing['machine']['runtime'].get('NUM_STREAMS', '?')} streams), {timing['seconds']:.0f} s")
        fp32 = timing["irs"]["fp32"]["images_per_second"]
        print(f"  fp32 {fp32['median']:9.0f} images/s  [{fp32['min']:.0f}, {fp32['max']:.0f}]")
        fully = {}
        for name, entry in timing["irs"].items():
            if name == "fp32":
                continue
            info = args.results / "quantized" / model / name / "quantize.json"
            floats = len(json.loads(info.read_text()).get("float_layers", [])) if info.is_file() else None
            if floats == 0:
                fully[name] = entry["speedup"]
            floats_text = "?" if floats is None else str(floats)
            print(f"  {name:32s} {entry['speedup']['median']:5.2f}×  [{entry['speedup']['min']:.2f}, "
                  f"{entry['speedup']['max']:.2f}]  {entry['images_per_second']['median']:9.0f} images/s  "
                  f"{floats_text:>3s} float layers")
        if not fully:
            print("  no cell with every layer in INT8")
            continue
        median, worst = consistency(speedup["median"] for speedup in fully.values())
        worst_overall = max(worst_overall, worst)
        print(f"  {len(fully)} fully quantized cells: median speed-up {median:.2f}×, the farthest "
              f"{worst * 100:.1f} % from it ({'within' if worst <= args.tolerance else 'OUTSIDE'} "
              f"±{args.tolerance * 100:.0f} %)")
        walls = [timing["irs"][name].get("wall_speedup") for name in fully]
        if all(walls):
            wall_median, wall_worst = consistency(wall["median"] for wall in walls)
            print(f"  in wall-clock time (wall_speedup): median {wall_median:.2f}×, the farthest "
                  f"{wall_worst * 100:.1f} % from it")
        load = timing["machine"].get("load_average")
        if load:
            print(f"  load average when the timing started: {', '.join(f'{value:.1f}' for value in load)}")
    return 0 if worst_overall <= args.tolerance else 2


if __name__ == "__main__":
    sys.exit(main())
