"""Datumaro's ``FractalImageGenerator`` (datumaro 1.11.1, the 2022 study's fractal generator) in the side environment.

The fractal kind's ``backend: datumaro`` runs here (rule ``calibration_set_datumaro``, ``make pot-env``)::

    python -m synthcal.calibration.datumaro_fractal write --name fractal_dm --spec '{"kind": "fractal", ...}' \
        --set set.npz --preview preview.png
    python -m synthcal.calibration.datumaro_fractal bench --count 50          # images/s, one JSON line
    python -m synthcal.calibration.datumaro_fractal reference --out ref.npz  # Datumaro's IFS pieces

Datumaro colours each grey IFS image with Zhang et al.'s Caffe colouriser and downloads the three model files
(129 MB) at run time. Here they come from the set's ``model_dir`` (nothing is downloaded); without ``model_dir``
the colouriser is skipped: Datumaro's own IFS rendering and augmentation run, and the grey image, stretched to
0..255 as the colouriser's last step stretches its output, stands in for the coloured one. The provenance and the
log say which happened.

Datumaro seeds category ``c`` with ``random.Random(c)`` and image ``i`` with ``random.Random(i)``; it takes no seed,
so a set's ``seed`` must stay 0. Only numpy, Datumaro (with OpenCV) and light synthcal modules are imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from random import Random

import numpy as np

from synthcal.io import UNLABELLED, ImageSet

COLOURISER_FILES = ("colorization_deploy_v2.prototxt", "colorization_release_v2.caffemodel", "pts_in_hull.npy")
IFS_ITERATIONS_SYSTEM = 100_000  # Datumaro's points per acceptance test of a candidate system


class DatumaroError(ValueError):
    """A ``backend: datumaro`` set that cannot be built as configured; the message names the key."""


def check_datumaro_spec(name: str, spec: dict, files: bool = True) -> None:
    """What a ``backend: datumaro`` fractal entry may say (checked before any job and again in the job); ``files``:
    also that ``model_dir`` holds the colouriser."""
    key = f"calibration.{name}"
    if spec.get("kind") != "fractal":
        raise DatumaroError(f"{key}.backend: datumaro is a backend of the fractal kind only")
    if int(spec.get("seed", 0)) != 0:
        raise DatumaroError(f"{key}.seed: Datumaro's generator seeds image i with Random(i) and takes no seed; "
                            "leave seed at 0 (or use backend: numpy for seeded sets)")
    if spec.get("colorization") == "palette":
        raise DatumaroError(f"{key}.colorization: palette is synthcal's NumPy colouring; the datumaro backend uses "
                            "Datumaro's learned colouriser from model_dir (or none without model_dir)")
    if spec.get("model_dir"):
        missing = missing_colouriser_files(spec["model_dir"]) if files else []
        if missing:
            raise DatumaroError(f"{key}.model_dir {spec['model_dir']} lacks {', '.join(missing)} (the Caffe "
                                "colouriser Datumaro would download); add them, or drop model_dir to skip it")
    elif spec.get("colorization") == "learned":
        raise DatumaroError(f"{key}.colorization: learned needs model_dir, a folder with "
                            f"{', '.join(COLOURISER_FILES)}")


def missing_colouriser_files(model_dir) -> list[str]:
    folder = Path(os.path.expanduser(str(model_dir)))
    return [name for name in COLOURISER_FILES if not (folder / name).is_file()]


def _require_datumaro() -> None:
    if _FractalImageGenerator is None:
        raise ImportError("the datumaro backend needs datumaro==1.11.1, which lives in the side environment "
                          "(make pot-env; the workflow runs it there: rule calibration_set_datumaro)")


def _background_colours() -> np.ndarray:
    from importlib.resources import files

    return np.loadtxt(files("datumaro.plugins.synthetic_data") / "background_colors.txt")


try:  # the subclasses exist only where Datumaro does (the side environment)
    from datumaro.plugins.synthetic_data import FractalImageGenerator as _FractalImageGenerator
except ImportError:  # main environment: the pure helpers above still import
    _FractalImageGenerator = None

if _FractalImageGenerator is not None:

    class _WithoutColouriser(_FractalImageGenerator):
        """Datumaro's generator with its colouriser step left out (no model files needed, nothing downloaded)."""

        @classmethod
        def _download_colorization_model(cls, save_dir: str) -> None:
            return None

        def _generate_image_batch(self, params, weights, indices) -> None:
            from datumaro.plugins.synthetic_data.utils import augment, suppress_computation_warnings
            from datumaro.util.image import save_image

            colours = _background_colours()
            with suppress_computation_warnings():
                for index, param, weight in zip(indices, params, weights, strict=True):
                    grey = self._generate_image(Random(index), param, self._iterations, self._height, self._width,
                                                draw_point=False, weight=weight)
                    span = max(int(grey.max()) - int(grey.min()), 1)
                    stretched = ((grey.astype(np.float32) - grey.min()) * (255.0 / span)).astype(np.uint8)
                    image = augment(Random(index), np.repeat(stretched[..., None], 3, axis=2), colours)
                    save_image(os.path.join(self._output_dir, f"{index:06d}.png"), image, create_dir=True)

    class _LayoutProbe(_FractalImageGenerator):
        """Runs Datumaro's own ``generate_dataset`` bookkeeping but records, instead of drawing, which category
        and weight vector each image gets (a category is recognised by the first draw of its ``Random(c)``)."""

        @classmethod
        def _download_colorization_model(cls, save_dir: str) -> None:
            return None

        def _generate_category(self, rng, base_h: int = 512, base_w: int = 512):
            return np.full((1, 7), rng.random())

        def _generate_image_batch(self, params, weights, indices) -> None:
            tokens = np.array([param[0, 0] for param in params])
            np.savez(os.path.join(self._output_dir, f"{indices[0]:06d}.npz"), tokens=tokens,
                     weights=np.asarray(weights, dtype=np.float64), indices=np.asarray(indices))
else:
    _WithoutColouriser = _LayoutProbe = None


def generate_datumaro_fractals(count: int, size: int | tuple[int, int] = 32, model_dir=None) -> ImageSet:
    """``count`` images from Datumaro's generator, (count, height, width, 3) uint8 RGB in Datumaro's index order;
    ``size`` is the side or (height, width)."""
    import datumaro
    from PIL import Image

    _require_datumaro()
    height, width = (size, size) if isinstance(size, int | np.integer) else size
    if model_dir:
        missing = missing_colouriser_files(model_dir)
        if missing:
            raise DatumaroError(f"model_dir {model_dir} lacks {', '.join(missing)}")
        folder = Path(os.path.expanduser(str(model_dir))).absolute()
        chosen, kwargs = _FractalImageGenerator, {"model_path": str(folder)}
        colouriser = f"Zhang et al. 2016 Caffe colouriser (OpenCV DNN) from {model_dir}"
    else:
        chosen, kwargs = _WithoutColouriser, {"model_path": tempfile.gettempdir()}
        colouriser = "skipped: no model_dir (Datumaro would download 129 MB); grey IFS image stretched to 0..255"
        print(f"datumaro backend: colouriser {colouriser}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="datumaro-fractals-") as output_dir:
        chosen(output_dir=output_dir, count=int(count), shape=(int(height), int(width)), **kwargs).generate_dataset()
        files = sorted(Path(output_dir).glob("*.png"))
        if len(files) != count:
            raise DatumaroError(f"Datumaro wrote {len(files)} images, expected {count}")
        images = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in files]).astype(np.uint8)
    provenance = {
        "generator": "datumaro.plugins.synthetic_data.FractalImageGenerator",
        "algorithm": "FractalDB IFS chaos game (arXiv 2103.13023) as implemented by Datumaro",
        "backend": "datumaro",
        "datumaro_version": datumaro.__version__,
        "numpy_version": np.__version__,
        "count": int(count),
        "size": [int(height), int(width)],
        "seed": 0,
        "seeding": "Datumaro's own: category c uses random.Random(c), image i random.Random(i)",
        "colouriser": colouriser,
        "colorization": "learned" if model_dir else "none",
    }
    return ImageSet(images=images, labels=np.full(count, UNLABELLED, dtype=np.int64), provenance=provenance)


def write_datumaro_set(name: str, spec: dict, size: tuple[int, int], set_path, preview_path) -> ImageSet:
    """The workflow's calibration set for a ``backend: datumaro`` fractal entry at ``size``, with its preview."""
    from synthcal.calibration.preview import save_preview
    from synthcal.io import save_image_set

    check_datumaro_spec(name, spec)
    image_set = generate_datumaro_fractals(int(spec.get("count", 5000)), tuple(size), spec.get("model_dir"))
    image_set.provenance = {"name": name, "kind": "fractal", "config": spec, **image_set.provenance}
    save_image_set(set_path, image_set.images, image_set.labels, image_set.provenance)
    save_preview(image_set.images, image_set.labels, preview_path)
    return image_set


def time_generation(count: int, size: int = 32, model_dir=None) -> dict:
    start = time.perf_counter()
    image_set = generate_datumaro_fractals(count, size, model_dir)
    seconds = time.perf_counter() - start
    return {"count": count, "size": size, "seconds": seconds, "images_per_second": count / seconds,
            "colouriser": image_set.provenance["colouriser"], "processes": min(os.cpu_count() or 1, count),
            "datumaro_version": image_set.provenance["datumaro_version"]}


def ifs_reference(out_path, systems_path=None, points: int = 100_000, counts=(1, 7, 25, 26, 60, 100)) -> None:
    """Datumaro's IFS pieces for comparison with synthcal.calibration.fractal_renderer, written to ``out_path`` (npz):

    ``weights`` (its 25 weight vectors); ``layout_<count>`` (category and weight vector per image, recorded from its
    own ``generate_dataset``); ``system_datumaro`` (category 0 as its acceptance loop draws it from ``Random(0)``);
    and for that system and each system in ``systems_path`` (npz with ``params`` (S, 7, 6), ``probs`` (S, 7)):
    ``fill_*`` (share of a 512x512 canvas its 100k-point acceptance test covers) and ``points_*`` (its chaos game).
    """
    from datumaro.plugins.synthetic_data.utils import IFSFunction, suppress_computation_warnings

    _require_datumaro()
    arrays: dict[str, np.ndarray] = {"weights": _FractalImageGenerator._create_weights(IFSFunction.NUM_PARAMS)}
    arrays["colouriser_files"] = np.array([_FractalImageGenerator._MODEL_PROTO_FILENAME,
                                           _FractalImageGenerator._MODEL_WEIGHTS_FILENAME,
                                           _FractalImageGenerator._HULL_PTS_FILE_NAME])
    for count in counts:
        arrays[f"layout_{count}"] = _datumaro_layout(count)
    with tempfile.TemporaryDirectory() as scratch, suppress_computation_warnings():
        generator = _FractalImageGenerator(output_dir=scratch, count=25, shape=(32, 32), model_path=scratch)
        systems = {"datumaro": np.asarray(generator._generate_category(Random(0)), dtype=np.float64)}
        if systems_path:
            with np.load(systems_path) as ours:
                for index, (params, probs) in enumerate(zip(ours["params"], ours["probs"], strict=True)):
                    used = probs > 0
                    systems[f"ours{index}"] = np.column_stack([params[used], probs[used]])
        for key, system in systems.items():
            fill_image = generator._generate_image(Random(1), system, IFS_ITERATIONS_SYSTEM, 512, 512)
            ifs = IFSFunction(Random(2), prev_x=0.0, prev_y=0.0)
            for row in system:
                ifs.add_param(row[:IFSFunction.NUM_PARAMS], row[IFSFunction.NUM_PARAMS])
            ifs.calculate(points)
            arrays[f"system_{key}"] = system
            arrays[f"fill_{key}"] = np.array(np.count_nonzero(fill_image) / fill_image.size)
            arrays[f"points_{key}"] = np.stack([np.asarray(ifs.xs), np.asarray(ifs.ys)]).astype(np.float64)
    np.savez(out_path, **arrays)


class _InProcessPool:
    """Stands in for the spawn pool of Datumaro's generate_dataset when only its bookkeeping is recorded."""

    def __init__(self, processes=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, function, items):
        return [function(item) for item in items]

    def starmap(self, function, items):
        return [function(*item) for item in items]

    def close(self):
        pass

    def join(self):
        pass


class _InProcessContext:
    Pool = _InProcessPool


def _datumaro_layout(count: int) -> np.ndarray:
    """(count, 1 + 6): the category index and weight vector Datumaro's generate_dataset gives each image."""
    from datumaro.plugins.synthetic_data import image_generator

    saved = image_generator.get_context
    image_generator.get_context = lambda method: _InProcessContext()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            probe = _LayoutProbe(output_dir=scratch, count=count, shape=(32, 32), model_path=scratch)
            probe.generate_dataset()
            tokens = {Random(category).random(): category for category in range(probe._categories)}
            rows = np.zeros((count, 7))
            for batch in sorted(Path(scratch).glob("*.npz")):
                with np.load(batch) as data:
                    rows[data["indices"], 0] = [tokens[token] for token in data["tokens"]]
                    rows[data["indices"], 1:] = data["weights"]
    finally:
        image_generator.get_context = saved
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Datumaro's fractal generator (side environment only).")
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="a calibration set (set.npz + preview.png)")
    write.add_argument("--name", required=True)
    write.add_argument("--spec", required=True, help="the calibration entry as JSON")
    write.add_argument("--size", required=True, help="HEIGHTxWIDTH, e.g. 32x32")
    write.add_argument("--set", required=True)
    write.add_argument("--preview", required=True)
    bench = commands.add_parser("bench", help="time the generator; prints one JSON line")
    bench.add_argument("--count", type=int, default=50)
    bench.add_argument("--size", type=int, default=32)
    bench.add_argument("--model-dir", default=None)
    reference = commands.add_parser("reference", help="Datumaro's IFS pieces for the comparison test")
    reference.add_argument("--out", required=True)
    reference.add_argument("--systems", default=None, help="npz with our systems' params (S, 7, 6) and probs (S, 7)")
    reference.add_argument("--points", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.command == "write":
        size = tuple(int(side) for side in args.size.split("x"))
        image_set = write_datumaro_set(args.name, json.loads(args.spec), size, args.set, args.preview)
        print(json.dumps({"count": len(image_set), "colouriser": image_set.provenance["colouriser"]}))
    elif args.command == "bench":
        print(json.dumps(time_generation(args.count, args.size, args.model_dir)))
    else:
        ifs_reference(args.out, args.systems, args.points)
        print(json.dumps({"out": args.out}))


if __name__ == "__main__":
    main()
