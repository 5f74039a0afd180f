"""DiStyleGAN training on tiny fixtures: it learns, resumes bit-identically, and distillation runs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from synthcal.gan.distylegan import load_generator
from synthcal.gan.gan_train import DEFAULT_TRAIN_CONFIG, resolve_config, train_distylegan
from synthcal.io import save_image_set, save_npz_deterministic

torch.set_num_threads(1)

TINY = {"batch_size": 8, "ngf": 16, "ndf": 16, "z_dim": 16, "project_dim": 8, "sample_every": 0,
        "sample_per_class": 2, "checkpoint_every": 1000}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("gan_data")
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 10
    noise_images = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    save_image_set(folder / "real.npz", noise_images, labels, {"what": "random test images"})
    # teacher: one flat colour per class, easy to imitate
    colours = rng.integers(0, 256, (10, 3))
    flat_images = np.broadcast_to(colours[labels][:, None, None, :], (32, 32, 32, 3)).astype(np.uint8).copy()
    z = rng.normal(size=(32, 16)).astype(np.float32)
    save_npz_deterministic(folder / "teacher.npz", z=z, labels=labels, images=flat_images)
    save_image_set(folder / "flat.npz", flat_images, labels, {"what": "one flat colour per class"})
    return {"real": folder / "real.npz", "teacher": folder / "teacher.npz", "flat": folder / "flat.npz"}


def _column(out_dir, name: str) -> np.ndarray:
    with open(out_dir / "train_log.csv") as handle:
        return np.array([float(row[name]) for row in csv.DictReader(handle) if row[name]])


def _checkpoint(out_dir) -> dict:
    return torch.load(out_dir / "checkpoint.pt", weights_only=True)


def _assert_identical(first, second) -> None:
    if isinstance(first, torch.Tensor):
        assert torch.equal(first, second)
    elif isinstance(first, dict):
        assert first.keys() == second.keys()
        for key in first:
            _assert_identical(first[key], second[key])
    elif isinstance(first, list | tuple):
        assert len(first) == len(second)
        for a, b in zip(first, second, strict=True):
            _assert_identical(a, b)
    elif isinstance(first, float) and np.isnan(first):
        assert np.isnan(second)
    else:
        assert first == second


def test_adversarial_discriminator_learns(fixtures, tmp_path):
    config = {**TINY, "real_data": fixtures["real"], "steps": 50, "sample_every": 25}
    summary = train_distylegan(config, tmp_path, show_progress=False)
    assert summary["finished"] and summary["step"] == 50 and summary["device"] in ("cpu", "cuda")
    loss_d = _column(tmp_path, "loss_d")
    assert len(loss_d) == 50
    assert loss_d[:5].mean() > 1.8  # hinge loss starts near 2
    assert loss_d[-10:].mean() < loss_d[:10].mean() - 0.5
    assert len(_column(tmp_path, "loss_g")) == 50  # gstep 1: G every step
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_000025.png", "step_000050.png"]
    generator = load_generator(tmp_path)
    assert generator.config == {"ngf": 16, "z_dim": 16, "c_dim": 10, "project_dim": 8, "nc": 3}
    assert (tmp_path / "train_config.json").is_file()


def test_distill_runs_and_imitates_teacher(fixtures, tmp_path):
    config = {**TINY, "mode": "distill", "teacher_data": fixtures["teacher"], "steps": 60, "gstep": 5, "lr": 1e-3}
    summary = train_distylegan(config, tmp_path, show_progress=False)
    assert summary["finished"]
    pixel = _column(tmp_path, "g_pixel")
    assert pixel[-10:].mean() < pixel[:10].mean() - 0.04
    assert len(_column(tmp_path, "g_gan")) == 12  # adversarial terms every 5th step
    lambda_pixel = _column(tmp_path, "lambda_pixel")
    assert lambda_pixel[0] == pytest.approx(0.2) and lambda_pixel[-1] == pytest.approx(0.2 / 60)
    assert np.all(np.isfinite(_column(tmp_path, "loss_d")))
    assert (tmp_path / "generator.pt").is_file()


def test_auxiliary_class_head_learns_labels_and_ema_is_saved(fixtures, tmp_path):
    config = {**TINY, "real_data": fixtures["flat"], "steps": 60, "lr": 1e-3, "lambda_class": 1.0, "g_ema": 0.9}
    train_distylegan(config, tmp_path, show_progress=False)
    d_class, g_class = _column(tmp_path, "d_class"), _column(tmp_path, "g_class")
    assert len(d_class) == len(g_class) == 60
    assert d_class[:3].mean() > 1.5  # about ln 10 before D has seen the labels
    assert d_class[-10:].mean() < 0.7 * d_class[:10].mean()  # D tells the flat colours apart
    assert g_class[-10:].mean() < g_class[:10].mean()  # G learns to make what D calls the label
    checkpoint = _checkpoint(tmp_path)
    saved = load_generator(tmp_path).state_dict()
    for name, value in checkpoint["generator_ema"].items():
        assert torch.equal(saved[name], value.float())
    weight = "fc.0.weight"
    assert not torch.equal(checkpoint["generator_ema"][weight], checkpoint["generator"][weight])


def test_class_head_and_ema_off_by_default(fixtures, tmp_path):
    train_distylegan({**TINY, "real_data": fixtures["real"], "steps": 3}, tmp_path, show_progress=False)
    checkpoint = _checkpoint(tmp_path)
    assert checkpoint["generator_ema"] is None
    assert not any(name.startswith("classifier") for name in checkpoint["discriminator"])
    assert len(_column(tmp_path, "d_class")) == 0


@pytest.mark.parametrize(("mode", "extra"), [("adversarial", {}), ("adversarial", {"lambda_class": 1.0, "g_ema": 0.9}),
                                           ("distill", {})], ids=["adversarial", "adversarial_class_ema", "distill"])
def test_resume_is_bit_identical(fixtures, tmp_path, mode, extra):
    config = {**TINY, "mode": mode, "steps": 9, "gstep": 2, "real_data": fixtures["real"],
              "teacher_data": fixtures["teacher"] if mode == "distill" else None, **extra}
    train_distylegan(config, tmp_path / "straight", show_progress=False)
    partial = train_distylegan(config, tmp_path / "resumed", show_progress=False, stop_at_step=5)
    assert partial == {**partial, "step": 5, "finished": False}
    assert not (tmp_path / "resumed" / "generator.pt").exists()
    assert _checkpoint(tmp_path / "resumed")["step"] == 5
    train_distylegan({**config, "checkpoint_every": 2}, tmp_path / "resumed", show_progress=False)
    straight, resumed = _checkpoint(tmp_path / "straight"), _checkpoint(tmp_path / "resumed")
    assert straight["step"] == resumed["step"] == 9
    for key in ("generator", "generator_ema", "discriminator", "opt_g", "opt_d", "log", "torch_rng"):
        _assert_identical(straight[key], resumed[key])
    assert (tmp_path / "straight" / "generator.pt").read_bytes() == (tmp_path / "resumed" / "generator.pt").read_bytes()


def test_resume_rejects_changed_config(fixtures, tmp_path):
    config = {**TINY, "real_data": fixtures["real"], "steps": 2}
    train_distylegan(config, tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="lr"):
        train_distylegan({**config, "lr": 1e-3}, tmp_path, show_progress=False)
    train_distylegan({**config, "lr": 1e-3}, tmp_path, resume=False, show_progress=False)


def test_config_validation(fixtures, tmp_path):
    assert resolve_config({"real_data": "x.npz"})["lr"] == DEFAULT_TRAIN_CONFIG["lr"]
    with pytest.raises(ValueError, match="unknown"):
        resolve_config({"real_data": "x.npz", "learning_rate": 1})
    with pytest.raises(ValueError, match="teacher_data"):
        resolve_config({"mode": "distill"})
    with pytest.raises(ValueError, match="mode"):
        resolve_config({"mode": "vae", "real_data": "x.npz"})
    with pytest.raises(ValueError, match="lambda_class"):
        resolve_config({"mode": "distill", "teacher_data": "t.npz", "lambda_class": 1.0})
    with pytest.raises(ValueError, match="g_ema"):
        resolve_config({"real_data": "x.npz", "g_ema": 1.0})
    with pytest.raises(ValueError, match="batch_size"):
        train_distylegan({**TINY, "real_data": fixtures["real"], "batch_size": 64}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_data_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        train_distylegan({**TINY, "real_data": tmp_path / "missing.npz"}, tmp_path / "out", show_progress=False)


def test_checkpoint_without_newer_keys_resumes(fixtures, tmp_path):
    config = {**TINY, "real_data": fixtures["real"], "steps": 2}
    train_distylegan(config, tmp_path, show_progress=False)
    checkpoint = _checkpoint(tmp_path)
    for key in ("lambda_class", "g_ema"):  # written before these options existed
        del checkpoint["config"][key]
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    assert train_distylegan({**config, "steps": 4}, tmp_path, show_progress=False)["step"] == 4
    with pytest.raises(ValueError, match="g_ema"):
        train_distylegan({**config, "steps": 6, "g_ema": 0.9}, tmp_path, show_progress=False)
