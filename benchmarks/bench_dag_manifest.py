"""DAG build (``snakemake -n``) with a large test folder: the manifest must keep an unchanged tree cheap (≤ 10 s).

    .venv/bin/python benchmarks/bench_dag_manifest.py               # 50,000 tiny PNGs in a temp folder
    .venv/bin/python benchmarks/bench_dag_manifest.py --images 5000

Writes ``--images`` 8x8 PNGs into 10 class folders, points ``data.folders.test`` at them (resnet20 from ../shared,
a noise set, NNCF's default method), then times ``snakemake -n``: first with no manifest (every file read and
hashed), then on the unchanged tree (stat only), then after ``touch`` of every file (stat changed, bytes the same:
the digests are read again, nothing is to be re-run), then unchanged again. The same study with ``--baseline``
images runs first: Snakemake's own share of the time.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYNTHCAL_SHARED", REPO.parent / "shared")).resolve()
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_images(root: Path, count: int) -> None:
    for label in CLASSES:
        (root / label).mkdir(parents=True)
    for index in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (index % 256, index // 256 % 256, index // 65536)).save(buffer, "PNG")
        (root / CLASSES[index % 10] / f"{index:05d}.png").write_bytes(buffer.getvalue())


def dry_run(workdir: Path, config: Path) -> tuple[float, str]:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n",
               "--cores", "1", "--configfile", str(REPO / "config.yaml"), str(config)]
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if run.returncode:
        sys.exit(run.stdout[-2000:] + run.stderr[-2000:])
    return seconds, run.stdout + run.stderr


def time_study(temp: Path, count: int) -> list[tuple[str, float]]:
    """The four dry runs (module docstring) of a study whose test folder holds ``count`` images."""
    start = time.perf_counter()
    write_images(temp / "test", count)
    print(f"wrote {count} PNGs in {time.perf_counter() - start:.1f} s")
    config = {
        "study": {"models": ["resnet20"], "calibration": ["noise"], "methods": ["default"], "test_sets": []},
        "data": {"source": "folder", "folders": {"test": str(temp / "test")}},
        "models": {"resnet20": {"weights": {"source": "path",
                                            "path": str(SHARED / "weights/cifar10_resnet20-4118986f.pt")}}},
        "calibration": {"noise": {"kind": "noise", "count": 10, "seed": 0}},
    }
    config_path = temp / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    workdir = temp / "work"
    workdir.mkdir()
    figures = []
    for label in ("no manifest (all hashed)", "unchanged tree", "every file touched", "unchanged again"):
        if label == "every file touched":
            for file in (temp / "test").rglob("*.png"):
                os.utime(file)
        seconds, _ = dry_run(workdir, config_path)
        print(f"snakemake -n, {count} images, {label}: {seconds:.2f} s")
        figures.append((label, seconds))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--baseline", type=int, default=100, help="the same study with this many images first")
    args = parser.parse_args()
    results = {}
    for count in (args.baseline, args.images):
        with tempfile.TemporaryDirectory() as temp:
            results[count] = dict(time_study(Path(temp), count))
    unchanged = [label for label in results[args.images] if label.startswith("unchanged")]
    for label in unchanged:
        print(f"{label}: {results[args.images][label]:.2f} s with {args.images} images, "
              f"{results[args.baseline][label]:.2f} s with {args.baseline} (target: ≤ 10 s)")


if __name__ == "__main__":
    main()
