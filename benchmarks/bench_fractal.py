"""Time ``calibration.fractal_renderer.generate_fractals`` against Datumaro's ``FractalImageGenerator`` in one run.

Datumaro (1.11.1) lives in the side environment (``make pot-env``), so its timing runs there
(``python -m synthcal.calibration.datumaro_fractal bench``) and is reported back; interpreter start-up is not counted.
Without ``--model-dir`` (the three Caffe colouriser files) Datumaro's colouriser is skipped, which flatters it:
the ratio printed is then a lower bound on our speed-up. Datumaro uses a process pool of one worker per core;
ours runs in one process.

Usage: .venv/bin/python benchmarks/bench_fractal.py [--count 5000] [--repeats 3] [--datumaro-count 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthcal.calibration.fractal_renderer import generate_fractals  # noqa: E402
from synthcal.sideenv import missing_reason, run_json, side_env_ready  # noqa: E402


def time_runs(count: int, repeats: int, **kwargs) -> list[float]:
    seconds = []
    for repeat in range(repeats):
        start = time.perf_counter()
        generate_fractals(count, seed=repeat, show_progress=False, **kwargs)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000, help="images per run (ours)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (seeds 0..repeats-1)")
    parser.add_argument("--datumaro-count", type=int, default=50, help="images for the Datumaro run (it is slow)")
    parser.add_argument("--model-dir", default=None, help="folder with Datumaro's colouriser files (else skipped)")
    args = parser.parse_args()

    seconds = time_runs(args.count, args.repeats, size=args.size)
    median = statistics.median(seconds)
    ours_rate = args.count / median
    print(f"synthcal (numpy): {args.count} images at {args.size}x{args.size}, runs {[round(s, 2) for s in seconds]} s")
    print(f"synthcal (numpy): median {median:.2f} s, {ours_rate:.1f} images/s")

    if not side_env_ready():
        print(f"Datumaro not measured: {missing_reason()}")
        return
    extra = ["--model-dir", args.model_dir] if args.model_dir else []
    datumaro = run_json("synthcal.calibration.datumaro_fractal", "bench", "--count", str(args.datumaro_count),
                        "--size", str(args.size), *extra)
    print(f"datumaro {datumaro['datumaro_version']}: {datumaro['count']} images in {datumaro['seconds']:.2f} s "
          f"({datumaro['processes']} processes), {datumaro['images_per_second']:.3f} images/s; "
          f"colouriser {datumaro['colouriser']}")
    bound = "" if args.model_dir else " (a lower bound: Datumaro ran without its colouriser)"
    print(f"ratio synthcal / datumaro: {ours_rate / datumaro['images_per_second']:.0f}x{bound}")


if __name__ == "__main__":
    main()
