"""Time ``synthcal.fractal.generate_fractals`` (and Datumaro's generator when it is installed).

Usage: .venv/bin/python benchmarks/bench_fractal.py [--count 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthcal.fractal import generate_fractals  # noqa: E402


def time_runs(count: int, repeats: int, **kwargs) -> list[float]:
    seconds = []
    for repeat in range(repeats):
        start = time.perf_counter()
        generate_fractals(count, seed=repeat, show_progress=False, **kwargs)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000, help="images per run")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (seeds 0..repeats-1)")
    parser.add_argument("--datumaro-count", type=int, default=50, help="images for the Datumaro comparison")
    parser.add_argument("--model-dir", default=None, help="Datumaro colorization model folder (else it downloads)")
    args = parser.parse_args()

    seconds = time_runs(args.count, args.repeats, size=args.size)
    median = statistics.median(seconds)
    numpy_rate = args.count / median
    print(f"numpy backend: {args.count} images at {args.size}x{args.size}, runs {[round(s, 2) for s in seconds]} s")
    print(f"numpy backend: median {median:.2f} s, {numpy_rate:.1f} images/s")

    try:
        import datumaro  # noqa: F401
    except ImportError:
        print("datumaro not installed: skipping the comparison")
        return
    seconds = time_runs(args.datumaro_count, 1, size=args.size, backend="datumaro", model_dir=args.model_dir)
    datumaro_rate = args.datumaro_count / seconds[0]
    print(f"datumaro backend: {args.datumaro_count} images in {seconds[0]:.2f} s, {datumaro_rate:.2f} images/s")
    print(f"speed-up numpy / datumaro: {numpy_rate / datumaro_rate:.1f}x")


if __name__ == "__main__":
    main()
