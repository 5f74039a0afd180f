"""Tests for the FractalDB-style generator (small counts, so they stay fast)."""

from __future__ import annotations

import numpy as np
import pytest

from synthcal.calibration import fractal_renderer as fractal
from synthcal.calibration.fractal_renderer import (
    FILL_THRESHOLD,
    _generator,
    fill_ratio,
    generate_fractals,
    image_layout,
    sample_systems,
    weight_variants,
)
from synthcal.io import UNLABELLED


@pytest.fixture(scope="module")
def small_set():
    return generate_fractals(60, seed=3, show_progress=False)


def test_shape_dtype_labels_provenance(small_set):
    assert small_set.images.shape == (60, 32, 32, 3)
    assert small_set.images.dtype == np.uint8
    assert small_set.labels.shape == (60,) and (small_set.labels == UNLABELLED).all()
    assert not small_set.labelled
    provenance = small_set.provenance
    assert provenance["colorization"] == "palette" and "model-free" in provenance["colorization_note"]
    assert provenance["numpy_version"] == np.__version__
    assert provenance["seed"] == 3 and provenance["count"] == 60 and "algorithm_version" in provenance


def test_other_size():
    images = generate_fractals(3, seed=0, size=48, show_progress=False).images
    assert images.shape == (3, 48, 48, 3)


def test_same_seed_same_bytes(small_set):
    again = generate_fractals(60, seed=3, show_progress=False)
    assert again.images.tobytes() == small_set.images.tobytes()


def test_independent_of_chunking(small_set, monkeypatch):
    monkeypatch.setattr(fractal, "CHUNK_IMAGES", 7)
    monkeypatch.setattr(fractal, "CANDIDATES_PER_ROUND", 3)
    rechunked = generate_fractals(60, seed=3, show_progress=False)
    assert rechunked.images.tobytes() == small_set.images.tobytes()


def test_large_canvases_render_in_small_chunks_with_the_same_bytes(monkeypatch):
    # 224 px: 10 images per chunk instead of 128 (2.2 GB -> 0.45 GB for 64 images); here 3 per chunk at 32 px
    whole = generate_fractals(20, seed=5, show_progress=False)
    monkeypatch.setattr(fractal, "CHUNK_CANVAS_PIXELS", 3 * 64 * 64 + 1)
    calls = []
    render_chunk = fractal._render_chunk
    monkeypatch.setattr(fractal, "_render_chunk", lambda p, d, c: calls.append(len(d)) or render_chunk(p, d, c))
    assert generate_fractals(20, seed=5, show_progress=False).images.tobytes() == whole.images.tobytes()
    assert calls == [3] * 6 + [2]


def test_different_seed_differs(small_set):
    other = generate_fractals(60, seed=4, show_progress=False)
    assert not np.array_equal(other.images, small_set.images)


def test_images_not_blank_and_colourful(small_set):
    pixels = small_set.images.reshape(len(small_set), -1, 3).astype(np.float64)
    per_image_std = pixels.reshape(len(small_set), -1).std(axis=1)
    assert (per_image_std > 1.0).all()
    assert np.median(per_image_std) > 15
    channel_spread = np.abs(pixels - pixels.mean(axis=2, keepdims=True)).mean(axis=(1, 2))
    assert (channel_spread > 0.5).all()
    assert np.median(channel_spread) > 5
    assert len({tuple(image[0, 0]) for image in small_set.images}) > 10  # varied backgrounds


def test_accepted_systems_meet_fill_criterion():
    systems = sample_systems(2, seed=11)
    assert (systems["fill"] >= FILL_THRESHOLD).all()
    for system in range(2):
        maps = systems["num_maps"][system]
        assert 2 <= maps <= 7
        params, probs = systems["params"][system], systems["probs"][system]
        assert np.abs(params[:maps]).max() <= 1 and not params[maps:].any()
        determinants = np.abs(params[:maps, 0] * params[:maps, 3] - params[:maps, 1] * params[:maps, 2])
        np.testing.assert_allclose(probs[:maps], determinants / determinants.sum())
        # re-running the accepted candidate's own generator reproduces its fill exactly
        rng = _generator(11, 0, system, systems["tries"][system] - 1)
        rng.integers(2, 8)
        rng.uniform(-1.0, 1.0, (maps, 6))
        assert fill_ratio(params, probs, rng) == pytest.approx(systems["fill"][system])


def test_weight_variants_and_layout():
    weights = weight_variants()
    assert weights.shape == (25, 6)
    assert (weights[0] == 1).all()
    assert sorted(np.round(weights[1:5, 0], 6)) == [0.2, 0.6, 1.4, 1.8]
    assert ((weights[1:] != 1).sum(axis=1) == 1).all()
    systems_of, variants_of, num_systems = image_layout(5000)
    assert num_systems == 14 and systems_of.max() == 13 and variants_of.max() == 24
    systems_of, variants_of, num_systems = image_layout(7)
    assert num_systems == 1 and list(variants_of) == list(range(7))


def test_learned_without_model_files(tmp_path):
    with pytest.raises(ValueError, match="model_dir"):
        generate_fractals(2, seed=0, colorization="learned", show_progress=False)
    with pytest.raises(FileNotFoundError, match="colorization_release_v2.caffemodel"):
        generate_fractals(2, seed=0, colorization="learned", model_dir=tmp_path, show_progress=False)


@pytest.mark.parametrize("count", [0, -5, 2.5])
def test_bad_count(count):
    with pytest.raises(ValueError, match="count"):
        generate_fractals(count, seed=0, show_progress=False)


def test_bad_options():
    with pytest.raises(ValueError, match="colorization"):
        generate_fractals(2, seed=0, colorization="rainbow", show_progress=False)
    with pytest.raises(ValueError, match="backend"):
        generate_fractals(2, seed=0, backend="torch", show_progress=False)


def test_datumaro_backend_missing():
    try:
        import datumaro  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="datumaro"):
            generate_fractals(2, seed=0, backend="datumaro", show_progress=False)
    else:
        pytest.skip("datumaro is installed")
