import numpy as np
import pytest

from synthcal.calibration.noise import generate_noise
from synthcal.io import UNLABELLED


@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_noise_shapes_and_determinism(distribution):
    first = generate_noise(50, seed=3, distribution=distribution)
    again = generate_noise(50, seed=3, distribution=distribution)
    other = generate_noise(50, seed=4, distribution=distribution)
    assert first.images.shape == (50, 32, 32, 3) and first.images.dtype == np.uint8
    assert first.labels.dtype == np.int64 and (first.labels == UNLABELLED).all() and not first.labelled
    assert np.array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    assert first.provenance["distribution"] == distribution and first.provenance["seed"] == 3


def test_uniform_covers_full_range():
    images = generate_noise(200, seed=0).images
    assert images.min() == 0 and images.max() == 255
    assert abs(images.mean() - 127.5) < 1.0


def test_gaussian_mean_and_std():
    images = generate_noise(200, seed=0, distribution="gaussian", mean=100.0, std=20.0).images.astype(float)
    assert abs(images.mean() - 100.0) < 0.5
    assert abs(images.std() - 20.0) < 0.5


def test_bad_distribution_name():
    with pytest.raises(ValueError, match="laplace.*uniform, gaussian"):
        generate_noise(10, seed=0, distribution="laplace")
