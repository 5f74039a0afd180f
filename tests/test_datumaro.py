"""Datumaro's FractalImageGenerator (datumaro 1.11.1, side environment) against synthcal.calibration.fractal_renderer.

Datumaro draws with Python's ``random.Random(i)``, we with NumPy's SeedSequence, so no image can match byte for
byte. What the algorithm shares is compared exactly or on the same systems: the 25 weight vectors and the image
layout (from Datumaro's own ``generate_dataset``), and, for Datumaro's category 0 (``Random(0)``) and for systems
our sampler accepted at seed 0, the acceptance fill ratio and the attractor each chaos game draws.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO, require_side_env, run_snakemake

from synthcal.calibration import fractal_renderer as fractal
from synthcal.calibration.datumaro_fractal import (
    COLOURISER_FILES,
    DatumaroError,
    check_datumaro_spec,
    missing_colouriser_files,
)
from synthcal.calibration.fractal_renderer import (
    MAX_MAPS,
    NUM_PARAMS,
    fill_ratio,
    image_layout,
    sample_systems,
    weight_variants,
)
from synthcal.io import UNLABELLED, load_image_set
from synthcal.sideenv import run_json

COUNTS = (1, 7, 25, 26, 60, 100)
OUR_SYSTEMS = 3
GRID = 64


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    require_side_env()
    folder = tmp_path_factory.mktemp("datumaro")
    systems = sample_systems(OUR_SYSTEMS, seed=0)
    np.savez(folder / "ours.npz", params=systems["params"], probs=systems["probs"])
    run_json("synthcal.calibration.datumaro_fractal", "reference", "--out", str(folder / "reference.npz"),
             "--systems", str(folder / "ours.npz"), timeout=600)
    with np.load(folder / "reference.npz") as data:
        return {key: data[key] for key in data.files}


def test_weight_vectors_are_datumaros(reference):
    np.testing.assert_array_equal(weight_variants(), reference["weights"])


def test_colouriser_files_are_the_ones_datumaro_loads(reference):
    assert tuple(reference["colouriser_files"]) == COLOURISER_FILES


@pytest.mark.parametrize("count", COUNTS)
def test_image_layout_is_datumaros(reference, count):
    system, weight, num_systems = image_layout(count)
    recorded = reference[f"layout_{count}"]
    np.testing.assert_array_equal(system, recorded[:, 0])
    np.testing.assert_array_equal(weight_variants()[weight], recorded[:, 1:])
    assert num_systems == int(recorded[:, 0].max()) + 1


def _table(system: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A Datumaro system (maps, 7: a..f, probability) as our (7, 6) parameter table and (7,) probabilities."""
    params, probs = np.zeros((MAX_MAPS, NUM_PARAMS)), np.zeros(MAX_MAPS)
    params[:len(system)], probs[:len(system)] = system[:, :NUM_PARAMS], system[:, NUM_PARAMS]
    return params, probs / probs.sum()


def _our_points(system: np.ndarray, walkers: int = 1000, steps: int = 100, burn_in: int = 20) -> np.ndarray:
    """Our lockstep chaos game (as in the acceptance test) on one system: (2, walkers * steps) points."""
    params, probs = _table(system)
    rng = fractal._generator(0, 99)
    draws = fractal._map_lookup(probs[probs > 0])[rng.integers(0, 65536, (steps + burn_in, walkers), dtype=np.uint16)]
    start = np.zeros(walkers, np.float32)
    xs, ys, _ = fractal._iterate(params, draws.astype(np.intp), start, start.copy(), burn_in)
    return np.stack([xs.ravel(), ys.ravel()]).astype(np.float64)


def _densities(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hit densities of two point clouds on one GRID x GRID raster over their joint bounding box."""
    low, high = np.minimum(first.min(1), second.min(1)), np.maximum(first.max(1), second.max(1))
    extent = [[low[0], high[0]], [low[1], high[1]]]
    histograms = [np.histogram2d(p[0], p[1], bins=GRID, range=extent)[0] for p in (first, second)]
    return tuple(h / h.sum() for h in histograms)


def _systems(reference) -> list[str]:
    return ["datumaro", *(f"ours{i}" for i in range(OUR_SYSTEMS))]


def test_fill_ratio_agrees_on_the_same_systems(reference):
    for key in _systems(reference):
        params, probs = _table(reference[f"system_{key}"])
        ours = fill_ratio(params, probs, fractal._generator(0, 7))
        theirs = float(reference[f"fill_{key}"])
        assert abs(ours - theirs) < 0.02, (key, ours, theirs)
        assert ours >= fractal.FILL_THRESHOLD - 0.02 and theirs >= fractal.FILL_THRESHOLD - 0.02, (key, ours, theirs)


def test_attractors_agree_on_the_same_systems(reference):
    for key in _systems(reference):
        theirs = reference[f"points_{key}"][:, 20:]  # Datumaro's single chain from the origin, transient dropped
        ours_density, theirs_density = _densities(_our_points(reference[f"system_{key}"]), theirs)
        total_variation = 0.5 * np.abs(ours_density - theirs_density).sum()
        overlap = ((ours_density > 0) & (theirs_density > 0)).sum() / ((ours_density > 0) | (theirs_density > 0)).sum()
        assert total_variation < 0.15 and overlap > 0.8, (key, total_variation, overlap)


def test_attractors_of_different_systems_differ(reference):
    """The comparison above can fail: another system's attractor is far from Datumaro's."""
    theirs = reference["points_datumaro"][:, 20:]
    for key in (f"ours{i}" for i in range(OUR_SYSTEMS)):
        ours_density, theirs_density = _densities(_our_points(reference[f"system_{key}"]), theirs)
        assert 0.5 * np.abs(ours_density - theirs_density).sum() > 0.3, key


def test_generator_runs_without_the_colouriser(tmp_path):
    require_side_env()
    spec = {"kind": "fractal", "backend": "datumaro", "count": 2, "seed": 0}
    result = run_json("synthcal.calibration.datumaro_fractal", "write", "--name", "fractal_dm",
                      "--spec", json.dumps(spec),
                      "--size", "32x32", "--set", str(tmp_path / "set.npz"), "--preview", str(tmp_path / "p.png"),
                      timeout=600)
    assert result["count"] == 2 and result["colouriser"].startswith("skipped")
    image_set = load_image_set(tmp_path / "set.npz")
    assert image_set.images.shape == (2, 32, 32, 3) and image_set.images.dtype == np.uint8
    assert (image_set.labels == UNLABELLED).all() and (tmp_path / "p.png").stat().st_size > 0
    provenance = image_set.provenance
    assert provenance["backend"] == "datumaro" and provenance["datumaro_version"] == "1.11.1"
    assert provenance["name"] == "fractal_dm" and provenance["config"] == spec
    for image in image_set.images:  # a drawn fractal on a background, not a blank square
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10


@pytest.mark.parametrize("spec, message", [
    ({"kind": "fractal", "backend": "datumaro", "seed": 3}, r"\.seed: .*takes no seed"),
    ({"kind": "fractal", "backend": "datumaro", "colorization": "palette"}, r"\.colorization: palette"),
    ({"kind": "fractal", "backend": "datumaro", "colorization": "learned"}, r"\.colorization: learned needs model_dir"),
    ({"kind": "noise", "backend": "datumaro"}, r"\.backend: datumaro is a backend of the fractal kind"),
])
def test_datumaro_entries_are_checked(spec, message):
    with pytest.raises(DatumaroError, match=r"calibration\.fractal_dm" + message):
        check_datumaro_spec("fractal_dm", spec)


def test_colouriser_folder_must_hold_the_three_files(tmp_path):
    (tmp_path / COLOURISER_FILES[0]).write_text("")
    assert missing_colouriser_files(tmp_path) == list(COLOURISER_FILES[1:])
    with pytest.raises(DatumaroError, match="colorization_release_v2.caffemodel"):
        check_datumaro_spec("fractal_dm", {"kind": "fractal", "backend": "datumaro", "model_dir": str(tmp_path)})
    for name in COLOURISER_FILES:
        (tmp_path / name).write_text("")
    check_datumaro_spec("fractal_dm", {"kind": "fractal", "backend": "datumaro", "model_dir": str(tmp_path)})


def test_a_datumaro_set_is_routed_to_the_side_environment(tmp_path):
    config = {"calibration": {"fractal_dm": {"kind": "fractal", "backend": "datumaro", "count": 10}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--forceall",
               "results/calib/fractal_dm/32x32/set.npz", "results/calib/fractal/32x32/set.npz",
               "--configfile", str(path)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", output, re.MULTILINE))
    assert jobs.get("calibration_set_datumaro") == "1" and jobs.get("calibration_set") == "1", output[-3000:]


@pytest.mark.slow
def test_workflow_builds_a_datumaro_set(tmp_path):
    require_side_env()
    config = {"study": {"models": ["resnet20"], "calibration": ["fractal_dm"], "methods": ["default"]},
              "calibration": {"fractal_dm": {"kind": "fractal", "backend": "datumaro", "count": 2}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    target = "results/calib/fractal_dm/32x32/set.npz"
    run = run_snakemake(tmp_path / "work", path, args=(target,), timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    image_set = load_image_set(tmp_path / "work" / target)
    assert image_set.images.shape == (2, 32, 32, 3) and image_set.provenance["backend"] == "datumaro"
    log = (tmp_path / "work" / "results" / "logs" / "calib" / "fractal_dm" / "32x32.log").read_text()
    assert "colouriser skipped" in log  # said where the user looks
