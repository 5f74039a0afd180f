"""ImageNet scale (224 px, 1,000 classes): the pieces a user's network and data need, without a Snakemake run."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from synthcal.calibration.crossfold import calibration_images, fold_of
from synthcal.calibration.preview import preview_indices, thumbnails
from synthcal.data import DataError, crop_plan, decode_image
from synthcal.io import ImageSet
from synthcal.models import ModelConfigError
from synthcal.models.pytorch import load_factory, package_file


def _jpeg(width: int, height: int, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if mode in ("RGB", "L", "CMYK") else "PNG")
    return buffer.getvalue()


def test_factory_names_a_dotted_attribute():
    assert load_factory("json:JSONDecoder.decode", "models.x.factory") is __import__("json").JSONDecoder.decode
    with pytest.raises(ModelConfigError, match="has no callable 'JSONDecoder.nothing'"):
        load_factory("json:JSONDecoder.nothing", "models.x.factory")


def test_checkpoint_from_an_installed_package_file():
    path = package_file("synthcal.models:model_zoo.json", "models.x.checkpoint.package_file")
    assert path.name == "model_zoo.json" and path.is_file()
    with pytest.raises(ModelConfigError, match="models.x.checkpoint.package_file: package 'no_such_pkg_xyz' is not"):
        package_file("no_such_pkg_xyz:w.pth", "models.x.checkpoint.package_file")
    with pytest.raises(ModelConfigError, match="has no file missing.pth"):
        package_file("synthcal.models:missing.pth", "models.x.checkpoint.package_file")


def test_centre_crop_resizes_the_shorter_side_then_crops():
    plan = crop_plan({"size": 224})
    assert plan["resize_shorter"] == 256 and plan["views"] == ["centre"]
    data = _jpeg(400, 300)
    (crop,) = decode_image(data, "a.jpg", crop=plan)
    assert crop.shape == (224, 224, 3)
    # the same pixels as resizing by hand (shorter side 300 -> 256, width 400 -> 341) and cutting the middle
    resized = Image.open(io.BytesIO(data)).convert("RGB").resize((341, 256), Image.Resampling.BILINEAR)
    expected = np.asarray(resized.crop((58, 16, 282, 240)))
    np.testing.assert_array_equal(crop, expected)


def test_views_are_distinct_crops_and_flips():
    plan = crop_plan({"size": 224, "views": 5})
    views = decode_image(_jpeg(300, 256), "a.jpg", crop=plan)
    assert len(views) == 5 and all(view.shape == (224, 224, 3) for view in views)
    np.testing.assert_array_equal(views[1], views[0][:, ::-1])  # centre, then the centre mirrored
    assert not np.array_equal(views[2], views[3])  # top-left and bottom-right differ


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA"])
def test_other_modes_are_converted_to_rgb(mode):
    (crop,) = decode_image(_jpeg(260, 256, mode), "a.img", crop=crop_plan({"size": 224}))
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8


def test_a_crop_larger_than_the_resized_image_is_refused_with_the_sizes():
    with pytest.raises(DataError, match=r"a.jpg: a 300x300 crop is larger than the image resized to 256x256"):
        decode_image(_jpeg(256, 256), "a.jpg", crop=crop_plan({"size": 300, "resize": 256}))


def test_a_corrupt_jpeg_names_the_file():
    with pytest.raises(DataError, match="cannot read image broken.jpg"):
        decode_image(_jpeg(256, 256)[:200], "broken.jpg", crop=crop_plan({"size": 224}))


def test_crossfold_never_calibrates_on_an_image_it_scores():
    labels = np.arange(1000) % 1000
    image_set = ImageSet(np.zeros((1000, 2, 2, 3), np.uint8), labels, {"folds": 2})
    folds = fold_of(labels, 2)
    for fold in range(2):
        calibration = calibration_images(image_set, fold)
        assert len(calibration) == 500
        assert not set(calibration.labels) & set(labels[folds == fold])  # no class of the scored fold


def test_previews_stay_small_at_224_px_and_1000_classes():
    labels = np.repeat(np.arange(1000), 2)
    chosen = preview_indices(labels, per_class=10)
    assert len(chosen) == 20  # 10 classes at most, not 1,000 rows
    tiles = thumbnails(np.zeros((3, 224, 224, 3), np.uint8))
    assert tiles.shape == (3, 64, 64, 3)
