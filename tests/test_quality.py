import numpy as np
import pytest
import torch
from conftest import TinyClassifier, shared_path
from torch import nn

from synthcal.calibration.noise import generate_noise
from synthcal.calibration.quality import calibration_quality, class_consistency, frechet_distance, predict_with_features
from synthcal.io import ImageSet
from synthcal.models.checkpoint import load_state_dict_file
from synthcal.models.cifar_zoo import build_model
from synthcal.models.raw_pixels import RawPixelClassifier
from synthcal.models.zoo import ZOO_INPUT


def resnet20() -> nn.Module:
    net = build_model("resnet20")
    net.load_state_dict(load_state_dict_file(shared_path("weights", "cifar10_resnet20-4118986f.pt")))
    return RawPixelClassifier(net, ZOO_INPUT).eval()


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(300, 16))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_exact_on_shifted_and_scaled_samples():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    feats -= feats.mean(axis=0)  # zero mean, so scaling does not move the mean
    shift = rng.normal(size=8)
    # same covariance: only the mean term is left
    assert frechet_distance(feats, feats + shift) == pytest.approx(shift @ shift, rel=1e-6)
    # covariance x4: sqrt(C 4C) = 2C, so the trace term is tr(C)
    expected = shift @ shift + np.trace(np.cov(feats, rowvar=False))
    assert frechet_distance(feats, 2 * feats + shift) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(2)
    dim, n = 4, 20000
    var_a, var_b = np.array([1.0, 2.0, 0.5, 1.5]), np.array([2.0, 1.0, 1.0, 0.25])
    mean_b = np.array([1.0, -0.5, 0.0, 2.0])
    feats_a = rng.normal(size=(n, dim)) * np.sqrt(var_a)
    feats_b = mean_b + rng.normal(size=(n, dim)) * np.sqrt(var_b)
    closed_form = mean_b @ mean_b + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    assert frechet_distance(feats_a, feats_b) == pytest.approx(closed_form, rel=0.05)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(3)
    distance = frechet_distance(rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 1.0)
    assert np.isfinite(distance) and distance > 0


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_predict_with_features_matches_forward():
    torch.manual_seed(0)
    model = RawPixelClassifier(TinyClassifier((8,)), ZOO_INPUT).eval()
    images = generate_noise(30, seed=0).images
    logits, features = predict_with_features(model, images, batch_size=7)
    assert logits.shape == (30, 10) and features.shape == (30, 8)
    assert logits.dtype == np.float64 and features.dtype == np.float64
    with torch.no_grad():
        expected = model(torch.from_numpy(images).permute(0, 3, 1, 2).float()).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_calibration_quality_fields_on_tiny_model():
    torch.manual_seed(0)
    model = RawPixelClassifier(TinyClassifier((8,)), ZOO_INPUT).eval()
    calib = generate_noise(40, seed=1)
    reference = generate_noise(50, seed=2, distribution="gaussian")
    stats = calibration_quality(model, calib, reference)
    assert stats["count"] == 40 and sum(stats["predicted_histogram"]) == 40
    assert len(stats["predicted_histogram"]) == 10
    assert 0.0 <= stats["histogram_entropy"] <= 1.0
    assert 0.1 <= stats["mean_max_softmax"] <= 1.0
    assert stats["class_consistency"] is None
    assert stats["frechet_distance"] > 0
    labelled = ImageSet(calib.images, np.arange(40) % 10, {})
    assert 0.0 <= calibration_quality(model, labelled, reference)["class_consistency"] <= 1.0


def test_class_consistency_needs_labels():
    model = RawPixelClassifier(TinyClassifier((8,)), ZOO_INPUT).eval()
    with pytest.raises(ValueError, match="label"):
        class_consistency(model, generate_noise(4, seed=0).images, np.full(4, -1))


def test_resnet20_on_real_train_images():
    from synthcal.data import read_image_folder

    train = read_image_folder(shared_path("data", "cifar10-lossless", "train"), show_progress=False)
    model = resnet20()
    calib = ImageSet(train.images[:200], train.labels[:200], {})
    reference = ImageSet(train.images[1000:1500], train.labels[1000:1500], {})
    assert class_consistency(model, calib.images, calib.labels) > 0.85
    stats = calibration_quality(model, calib, reference)
    assert stats["class_consistency"] > 0.85
    assert stats["histogram_entropy"] > 0.9
    assert stats["mean_max_softmax"] > 0.8
    noise_distance = calibration_quality(model, generate_noise(200, seed=0), reference)["frechet_distance"]
    assert noise_distance > 3 * stats["frechet_distance"]


def test_features_of_a_set_on_disk_equal_those_of_the_set_in_memory(tmp_path, monkeypatch):
    """The quality jobs read a stored set (the reference pool, a crossfold set) a batch at a time."""
    import openvino as ov

    from synthcal.io import StoredImages, load_image_set, save_image_set

    torch.manual_seed(0)
    network = TinyClassifier((8,)).eval()
    ov.save_model(ov.convert_model(network, example_input=torch.zeros(1, 3, 32, 32), input=[-1, 3, 32, 32]),
                  tmp_path / "fp32.xml", compress_to_fp16=False)
    images = generate_noise(30, seed=0).images
    save_image_set(tmp_path / "set.npz", images, np.zeros(30, np.int64), {})
    stored = load_image_set(tmp_path / "set.npz", stream=True).images
    assert isinstance(stored, StoredImages)
    in_memory = predict_with_features(tmp_path / "fp32.xml", images, batch_size=7)

    def whole(*_):
        raise AssertionError("the whole stored set was read at once")

    monkeypatch.setattr(StoredImages, "__array__", whole)
    on_disk = predict_with_features(tmp_path / "fp32.xml", stored, batch_size=7)
    for a, b in zip(in_memory, on_disk, strict=True):
        np.testing.assert_array_equal(a, b)
