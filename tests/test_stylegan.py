import pickle
import sys
import textwrap

import numpy as np
import pytest
import torch

from synthcal.gan.stylegan import StyleGANError, sample_stylegan2ada

# a stand-in for NVIDIA's networks: same attributes and call signature as G_ema
FAKE_NETWORK = textwrap.dedent('''
    import torch
    from torch import nn


    class FakeGenerator(nn.Module):
        def __init__(self, z_dim=16, c_dim=10):
            super().__init__()
            self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, c_dim, 32, 3
            self.linear = nn.Linear(z_dim + c_dim, 3 * 32 * 32)

        def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, noise_mode="random"):
            assert noise_mode == "const"
            x = self.linear(torch.cat([z * truncation_psi, c * 3.0], dim=1))
            return torch.tanh(x).view(-1, 3, 32, 32)
''')


def _forget_fake_modules():
    for name in [name for name in sys.modules if name.split(".")[0] in ("dnnlib", "torch_utils")]:
        del sys.modules[name]


@pytest.fixture
def fake_stylegan(tmp_path):
    """(pickle path, repo path) of a fake checkout whose classes are importable only from that path."""
    repo = tmp_path / "stylegan2-ada-pytorch"
    (repo / "dnnlib").mkdir(parents=True)
    (repo / "dnnlib" / "__init__.py").write_text("")
    (repo / "torch_utils").mkdir()
    (repo / "torch_utils" / "__init__.py").write_text("")
    (repo / "torch_utils" / "fake_networks.py").write_text(FAKE_NETWORK)
    saved_path = list(sys.path)
    sys.path.insert(0, str(repo))
    try:
        from torch_utils.fake_networks import FakeGenerator

        torch.manual_seed(0)
        pickle_path = tmp_path / "cifar10.pkl"
        with open(pickle_path, "wb") as handle:
            pickle.dump({"G_ema": FakeGenerator(), "D": None}, handle)
    finally:
        sys.path[:] = saved_path
        _forget_fake_modules()
    return pickle_path, repo


def test_pickle_needs_the_checkout(fake_stylegan):
    pickle_path, _ = fake_stylegan
    with pytest.raises(ModuleNotFoundError), open(pickle_path, "rb") as handle:
        pickle.load(handle)
    with pytest.raises(StyleGANError, match=r"calibration\.sg\.repo_path"):
        sample_stylegan2ada(pickle_path, None, 2, seed=0, show_progress=False, config_key="calibration.sg")


def test_sampling_shapes_labels_determinism(fake_stylegan):
    pickle_path, repo = fake_stylegan
    path_before = list(sys.path)
    first = sample_stylegan2ada(pickle_path, repo, per_class=3, seed=5, batch_size=7, show_progress=False)
    assert sys.path == path_before
    assert not [name for name in sys.modules if name.split(".")[0] in ("dnnlib", "torch_utils")]
    assert first.images.shape == (30, 32, 32, 3) and first.images.dtype == np.uint8
    assert first.labels.tolist() == [label for label in range(10) for _ in range(3)]
    again, noise = sample_stylegan2ada(pickle_path, str(repo), 3, 5, batch_size=30, show_progress=False,
                                       return_noise=True)
    assert np.array_equal(first.images, again.images)
    assert noise.shape == (30, 16) and noise.dtype == np.float32
    other = sample_stylegan2ada(pickle_path, repo, 3, 6, show_progress=False)
    assert not np.array_equal(first.images, other.images)
    truncated = sample_stylegan2ada(pickle_path, repo, 3, 5, truncation_psi=0.5, show_progress=False)
    assert not np.array_equal(first.images, truncated.images)
    provenance = first.provenance
    assert provenance["generator"] == "stylegan2-ada" and len(provenance["checkpoint_sha256"]) == 64
    assert provenance["seed"] == 5 and provenance["per_class"] == 3 and provenance["truncation_psi"] == 1.0


def test_restores_previously_imported_modules(fake_stylegan, tmp_path, monkeypatch):
    pickle_path, repo = fake_stylegan
    other = tmp_path / "other"
    (other / "dnnlib").mkdir(parents=True)
    (other / "dnnlib" / "__init__.py").write_text("MARK = 'other'\n")
    monkeypatch.syspath_prepend(str(other))
    import dnnlib

    try:
        sample_stylegan2ada(pickle_path, repo, 1, 0, show_progress=False)
        assert sys.modules["dnnlib"] is dnnlib and dnnlib.MARK == "other"
    finally:
        _forget_fake_modules()


def test_clear_errors(fake_stylegan, tmp_path):
    pickle_path, repo = fake_stylegan
    with pytest.raises(StyleGANError, match=r"calibration\.sg\.checkpoint"):
        sample_stylegan2ada(tmp_path / "missing.pkl", repo, 1, 0, config_key="calibration.sg")
    with pytest.raises(StyleGANError, match=r"missing-repo.*calibration\.sg\.repo_path"):
        sample_stylegan2ada(pickle_path, tmp_path / "missing-repo", 1, 0, config_key="calibration.sg")
    empty = tmp_path / "empty-checkout"
    (empty / "dnnlib").mkdir(parents=True)
    with pytest.raises(StyleGANError, match=r"repo_path.*empty-checkout.*torch_utils"):
        sample_stylegan2ada(pickle_path, empty, 1, 0)
    with pytest.raises(ValueError):
        sample_stylegan2ada(pickle_path, repo, 0, 0)
