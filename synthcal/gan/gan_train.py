"""Training DiStyleGAN generators: a class-conditional hinge GAN on labelled images, or TinyGAN-style black-box
distillation of a teacher generator from its (z, label, image) triples.

``train_distylegan(cfg, out_dir)`` is seeded and resumable: every random draw is derived from ``(seed, step)``,
so a run resumed from ``out_dir/checkpoint.pt`` continues bit-identically (on the same device and thread count).
No pretrained classifier is used anywhere in training: the optional auxiliary class head (``lambda_class``) is
part of the discriminator and learns from the training images alone.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from synthcal.gan.distylegan import NUM_CLASSES, Discriminator, Generator, one_hot, save_generator, to_uint8_nhwc
from synthcal.io import atomic_path, load_image_set, write_json

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train_log.csv"

DEFAULT_TRAIN_CONFIG = {
    # "adversarial": hinge GAN on `real_data`; "distill": TinyGAN-style distillation of `teacher_data`
    "mode": "adversarial",
    "steps": 50_000,  # optimisation steps (one D update each)
    "batch_size": 128,
    "lr": 2e-4,  # Adam, both networks
    "betas": [0.5, 0.999],
    # adversarial: G is updated on steps where (step + 1) % gstep == 0.
    # distill: G is updated every step with the distillation terms; the two adversarial terms join every gstep
    # steps (as in the original DiStyleGAN training, which used gstep=10).
    "gstep": 1,
    "lambda_pixel_start": 0.2,  # distill: pixel L1 weight, decays linearly to 0 at the last step
    "feature_weights": [0.125, 0.25, 0.5, 1.0],  # distill: L1 feature matching per D block, deeper blocks heavier
    "lambda_adv_distill": 0.01,  # distill: G's hinge loss on D(student image)
    "lambda_gan_g": 1.0,  # distill: G's hinge loss on D(G(random z))
    "lambda_gan_d": 0.2,  # distill: weight of D's real-vs-random GAN term
    "ngf": 256,
    "ndf": 128,
    "z_dim": 512,
    "project_dim": 128,
    "c_dim": NUM_CLASSES,
    "seed": 0,
    "checkpoint_every": 1000,  # steps between checkpoint.pt (and train_log.csv) writes
    "sample_every": 1000,  # steps between samples/step_XXXXXX.png grids; 0 = only at the end
    "sample_per_class": 8,  # columns of the sample grid (one row per class)
    # labelled image-set npz (uint8 NHWC + labels): the training data (adversarial) or the real images of the
    # GAN term (distill; when null there, a second teacher batch stands in for real images)
    "real_data": None,
    "teacher_data": None,  # distill: npz with z (N, z_dim) float, labels (N,) int, images (N, 32, 32, 3) uint8
    "num_threads": None,  # torch.set_num_threads when set
    # discriminator class conditioning: add a projection term (see distylegan.Discriminator); null = on in
    # adversarial mode (no teacher gives a class signal there), off in distill mode (the original head)
    "d_projection": None,
    # adversarial: weight of an AC-GAN auxiliary class head on the discriminator (0 = off): D learns the labels
    # of the real images by cross-entropy, G is pushed to make images D classifies as their label
    "lambda_class": 0.0,
    # decay of an exponential moving average of G's weights (0 = off); when on, samples and generator.pt are
    # the averaged weights (BatchNorm buffers copied from G)
    "g_ema": 0.0,
}

# keys that may change between a checkpoint and its resumption
_RESUMABLE_CHANGES = {"checkpoint_every", "sample_every", "sample_per_class", "num_threads"}
_LOG_COLUMNS = {
    "adversarial": ["step", "loss_d", "loss_g", "d_real", "d_fake", "d_class", "g_class"],
    "distill": ["step", "loss_d", "loss_g", "d_teacher", "d_student", "d_real", "d_random", "g_feature", "g_pixel",
                "g_adv_distill", "g_gan", "lambda_pixel"],
}
# independent random streams derived from the seed
_STREAM_REAL, _STREAM_TEACHER, _STREAM_NOISE, _STREAM_SAMPLES, _STREAM_TEACHER_AS_REAL = range(5)


def resolve_config(cfg: dict) -> dict:
    """Defaults overlaid with ``cfg``; rejects unknown keys and impossible values."""
    unknown = sorted(set(cfg) - set(DEFAULT_TRAIN_CONFIG))
    if unknown:
        raise ValueError(f"unknown DiStyleGAN training keys {unknown}; known: {sorted(DEFAULT_TRAIN_CONFIG)}")
    config = {**DEFAULT_TRAIN_CONFIG, **cfg}
    for key in ("real_data", "teacher_data"):
        config[key] = str(config[key]) if config[key] else None
    config["betas"] = [float(beta) for beta in config["betas"]]
    config["feature_weights"] = [float(weight) for weight in config["feature_weights"]]
    if config["mode"] not in _LOG_COLUMNS:
        raise ValueError(f"mode must be 'adversarial' or 'distill', got {config['mode']!r}")
    for key in ("steps", "batch_size", "gstep", "ngf", "ndf", "z_dim", "project_dim", "c_dim", "checkpoint_every"):
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ValueError(f"'{key}' must be a positive integer, got {config[key]!r}")
    if config["ngf"] % 8:
        raise ValueError(f"'ngf' must be a multiple of 8, got {config['ngf']}")
    config["lambda_class"], config["g_ema"] = float(config["lambda_class"]), float(config["g_ema"])
    if config["lambda_class"] < 0:
        raise ValueError(f"'lambda_class' must be >= 0, got {config['lambda_class']}")
    if config["lambda_class"] and config["mode"] != "adversarial":
        raise ValueError("'lambda_class' applies to mode 'adversarial' only (distill takes classes from the teacher)")
    if not 0.0 <= config["g_ema"] < 1.0:
        raise ValueError(f"'g_ema' must be in [0, 1), got {config['g_ema']}")
    if len(config["feature_weights"]) != 4:
        raise ValueError("'feature_weights' needs one weight per discriminator block (4)")
    needed = "real_data" if config["mode"] == "adversarial" else "teacher_data"
    if not config[needed]:
        raise ValueError(f"mode '{config['mode']}' needs '{needed}'")
    return config


def check_train_settings(settings: dict) -> None:
    """Raises ValueError naming the key for a bad ``gan_training.<name>.train`` entry (the workflow supplies
    ``real_data`` in adversarial mode, so it need not be set there)."""
    resolve_config({"real_data": "<from the workflow>", **settings})


def _derived_seed(seed: int, stream: int, index: int) -> int:
    return (int(seed) * 1_000_003 + stream * 7_919 + int(index) * 104_729 + 17) % (2**63)


def _rng(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(_derived_seed(seed, stream, index))


class _EpochSampler:
    """Batch indices for a step: a fresh seeded permutation per epoch, drop-last, stateless in the step."""

    def __init__(self, size: int, batch_size: int, seed: int, stream: int, what: str):
        if size < batch_size:
            raise ValueError(f"{what} has {size} items, fewer than batch_size {batch_size}")
        self.size, self.batch_size, self.seed, self.stream = size, batch_size, seed, stream
        self.batches_per_epoch = size // batch_size
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.size, generator=_rng(self.seed, self.stream, epoch))
        return self._perm[position * self.batch_size:(position + 1) * self.batch_size]


def _to_unit_range(images_nhwc_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images_nhwc_uint8.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _check_images(images: np.ndarray, labels: np.ndarray, path: Path, c_dim: int) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"{path}: images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or len(labels) == 0 or labels.min() < 0 or labels.max() >= c_dim:
        raise ValueError(f"{path}: needs one label in 0..{c_dim - 1} per image")


def load_real_data(path: str | os.PathLike, c_dim: int = NUM_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """A labelled image set as (uint8 NHWC tensor, int64 labels)."""
    path = Path(path)
    image_set = load_image_set(path)
    _check_images(image_set.images, image_set.labels, path, c_dim)
    return torch.from_numpy(np.ascontiguousarray(image_set.images)), torch.from_numpy(image_set.labels.astype(np.int64))


def load_teacher_data(path: str | os.PathLike, z_dim: int, c_dim: int = NUM_CLASSES):
    """A teacher set npz as (z float32, uint8 NHWC images, int64 labels)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher set not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        missing = sorted({"z", "labels", "images"} - set(data.files))
        if missing:
            raise ValueError(f"{path}: teacher set lacks {missing} (needs z, labels, images)")
        z, labels, images = data["z"], data["labels"], data["images"]
    _check_images(images, labels, path, c_dim)
    if z.shape != (len(images), z_dim):
        raise ValueError(f"{path}: z must have shape ({len(images)}, {z_dim}), got {z.shape}")
    return (torch.from_numpy(z.astype(np.float32)), torch.from_numpy(np.ascontiguousarray(images)),
            torch.from_numpy(labels.astype(np.int64)))


def _hinge_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.relu(1.0 - real_logits).mean(), F.relu(1.0 + fake_logits).mean()


def _set_requires_grad(model: torch.nn.Module, flag: bool) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(flag)


def _save_sample_grid(generator: Generator, z: torch.Tensor, per_class: int, path: Path) -> None:
    """One row per class; generator in eval mode (running BatchNorm statistics)."""
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    labels = torch.arange(generator.config["c_dim"]).repeat_interleave(per_class)
    with torch.no_grad():
        images = to_uint8_nhwc(generator(z.to(device), one_hot(labels, generator.config["c_dim"]).to(device)))
    generator.train(was_training)
    rows = images.reshape(-1, per_class, 32, 32, 3)
    padded = np.pad(rows, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), constant_values=255)
    grid = padded.transpose(0, 2, 1, 3, 4).reshape(rows.shape[0] * 34, per_class * 34, 3)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")


def _write_log(path: Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: ("" if isinstance(value, float) and math.isnan(value) else value)
                             for key, value in row.items()})


class _Trainer:
    def __init__(self, config: dict, device: torch.device):
        self.config, self.device = config, device
        seed = config["seed"]
        torch.manual_seed(seed)  # spectral-norm vectors and default inits
        self.generator = Generator(ngf=config["ngf"], z_dim=config["z_dim"], c_dim=config["c_dim"],
                                   project_dim=config["project_dim"]).to(device).train()
        projection = config["d_projection"]
        if projection is None:
            projection = config["mode"] == "adversarial"
        self.discriminator = Discriminator(ndf=config["ndf"], project_dim=config["project_dim"],
                                           c_dim=config["c_dim"], projection=projection,
                                           classifier=config["lambda_class"] > 0).to(device).train()
        self.generator_ema = copy.deepcopy(self.generator).eval() if config["g_ema"] else None
        adam = {"lr": config["lr"], "betas": tuple(config["betas"])}
        self.opt_g = torch.optim.Adam(self.generator.parameters(), **adam)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), **adam)
        self.real = self.teacher = None
        if config["real_data"]:
            self.real = load_real_data(config["real_data"], config["c_dim"])
            self.real_sampler = _EpochSampler(len(self.real[0]), config["batch_size"], seed, _STREAM_REAL,
                                              str(config["real_data"]))
        if config["mode"] == "distill":
            self.teacher = load_teacher_data(config["teacher_data"], config["z_dim"], config["c_dim"])
            size = len(self.teacher[0])
            self.teacher_sampler = _EpochSampler(size, config["batch_size"], seed, _STREAM_TEACHER,
                                                 str(config["teacher_data"]))
            self.teacher_as_real_sampler = _EpochSampler(size, config["batch_size"], seed, _STREAM_TEACHER_AS_REAL,
                                                         str(config["teacher_data"]))
        self.sample_z = torch.randn(config["c_dim"] * config["sample_per_class"], config["z_dim"],
                                    generator=_rng(seed, _STREAM_SAMPLES, 0))

    def _real_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.real is not None:
            index = self.real_sampler.indices(step)
            return _to_unit_range(self.real[0][index], self.device), self.real[1][index].to(self.device)
        index = self.teacher_as_real_sampler.indices(step)
        return _to_unit_range(self.teacher[1][index], self.device), self.teacher[2][index].to(self.device)

    def _noise(self, step: int, count: int) -> torch.Tensor:
        return torch.randn(count, self.config["z_dim"], generator=_rng(self.config["seed"], _STREAM_NOISE, step))

    def step(self, step: int) -> dict:
        if self.config["mode"] == "adversarial":
            return self._adversarial_step(step)
        return self._distill_step(step)

    def _d_update(self, loss: torch.Tensor) -> None:
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()

    def _g_update(self, loss: torch.Tensor) -> None:
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if self.generator_ema is not None:
            with torch.no_grad():
                for average, current in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
                    average.lerp_(current, 1.0 - self.config["g_ema"])
                for average, current in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
                    average.copy_(current)

    @property
    def sampling_generator(self) -> Generator:
        """The generator that is sampled and saved: the moving average when ``g_ema`` is on."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    def _adversarial_step(self, step: int) -> dict:
        config, G, D = self.config, self.generator, self.discriminator
        real, labels = self._real_batch(step)
        onehot = one_hot(labels, config["c_dim"])
        batch = len(real)
        update_g = (step + 1) % config["gstep"] == 0
        with torch.set_grad_enabled(update_g):
            fake = G(self._noise(step, batch).to(self.device), onehot)

        lambda_class = config["lambda_class"]
        logits, _, class_logits = D.forward_with_classes(torch.cat([real, fake.detach()]), torch.cat([onehot, onehot]))
        d_real, d_fake = _hinge_d(logits[:batch], logits[batch:])
        loss_d = d_real + d_fake
        row = {"d_real": d_real.item(), "d_fake": d_fake.item(), "loss_g": math.nan, "d_class": math.nan,
               "g_class": math.nan}
        if lambda_class:
            d_class = F.cross_entropy(class_logits[:batch], labels)  # real images only
            loss_d = loss_d + lambda_class * d_class
            row["d_class"] = d_class.item()
        self._d_update(loss_d)
        row["loss_d"] = loss_d.item()

        if update_g:
            _set_requires_grad(D, False)
            fake_logits, _, fake_class_logits = D.forward_with_classes(fake, onehot)
            loss_g = -fake_logits.mean()
            if lambda_class:
                g_class = F.cross_entropy(fake_class_logits, labels)
                loss_g = loss_g + lambda_class * g_class
                row["g_class"] = g_class.item()
            self._g_update(loss_g)
            _set_requires_grad(D, True)
            row["loss_g"] = loss_g.item()
        return row

    def _distill_step(self, step: int) -> dict:
        config, G, D = self.config, self.generator, self.discriminator
        index = self.teacher_sampler.indices(step)
        z_teacher = self.teacher[0][index].to(self.device)
        teacher = _to_unit_range(self.teacher[1][index], self.device)
        onehot_teacher = one_hot(self.teacher[2][index].to(self.device), config["c_dim"])
        real, real_labels = self._real_batch(step)
        onehot_real = one_hot(real_labels, config["c_dim"])
        batch = len(teacher)
        adversarial = (step + 1) % config["gstep"] == 0
        lambda_pixel = config["lambda_pixel_start"] * max(0.0, 1.0 - step / config["steps"])

        student = G(z_teacher, onehot_teacher)
        with torch.set_grad_enabled(adversarial):
            random_images = G(self._noise(step, batch).to(self.device), onehot_real)

        # D: teacher vs student (distillation) + weighted real vs random (GAN), one forward pass
        logits, _ = D(torch.cat([teacher, student.detach(), real, random_images.detach()]),
                      torch.cat([onehot_teacher, onehot_teacher, onehot_real, onehot_real]))
        d_teacher, d_student = _hinge_d(logits[:batch], logits[batch:2 * batch])
        d_real, d_random = _hinge_d(logits[2 * batch:3 * batch], logits[3 * batch:])
        loss_d = d_teacher + d_student + config["lambda_gan_d"] * (d_real + d_random)
        self._d_update(loss_d)

        # G: feature matching on D's blocks + decaying pixel L1 (+ both hinge terms every gstep steps)
        _set_requires_grad(D, False)
        with torch.no_grad():
            _, teacher_features = D(teacher, onehot_teacher)
        student_logits, student_features = D(student, onehot_teacher)
        g_feature = sum(weight * F.l1_loss(s, t) for weight, s, t in
                        zip(config["feature_weights"], student_features, teacher_features, strict=True))
        g_pixel = F.l1_loss(student, teacher)
        loss_g = g_feature + lambda_pixel * g_pixel
        g_adv_distill = g_gan = math.nan
        if adversarial:
            random_logits, _ = D(random_images, onehot_real)
            adv_distill, gan = -student_logits.mean(), -random_logits.mean()
            loss_g = loss_g + config["lambda_adv_distill"] * adv_distill + config["lambda_gan_g"] * gan
            g_adv_distill, g_gan = adv_distill.item(), gan.item()
        self._g_update(loss_g)
        _set_requires_grad(D, True)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_teacher": d_teacher.item(),
                "d_student": d_student.item(), "d_real": d_real.item(), "d_random": d_random.item(),
                "g_feature": g_feature.item(), "g_pixel": g_pixel.item(), "g_adv_distill": g_adv_distill,
                "g_gan": g_gan, "lambda_pixel": lambda_pixel}

    def state(self, step: int, log: list[dict]) -> dict:
        return {"step": step, "config": self.config, "log": log,
                "generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                "generator_ema": self.generator_ema.state_dict() if self.generator_ema is not None else None,
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def load(self, checkpoint: dict) -> None:
        self.generator.load_state_dict(checkpoint["generator"])
        self.discriminator.load_state_dict(checkpoint["discriminator"])
        if self.generator_ema is not None:
            self.generator_ema.load_state_dict(checkpoint["generator_ema"])
        self.opt_g.load_state_dict(checkpoint["opt_g"])
        self.opt_d.load_state_dict(checkpoint["opt_d"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if torch.cuda.is_available() and checkpoint["cuda_rng"]:
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])


def _check_resumable(saved: dict, config: dict, path: Path) -> None:
    allowed = set(_RESUMABLE_CHANGES)
    if config["mode"] == "adversarial":
        allowed.add("steps")  # no schedule depends on the total in this mode
    # keys added after a checkpoint was written count as their defaults
    changed = sorted(key for key in config
                     if key not in allowed and saved.get(key, DEFAULT_TRAIN_CONFIG[key]) != config[key])
    if changed:
        raise ValueError(f"{path} was written with a different config ({changed} differ); "
                         "delete it or pass resume=False to start over")


def train_distylegan(cfg: dict, out_dir: str | os.PathLike, resume: bool = True, show_progress: bool = True,
                     stop_at_step: int | None = None) -> dict:
    """Train a DiStyleGAN generator into ``out_dir`` (generator.pt + config.json, train_log.csv, samples/).

    ``stop_at_step`` ends the run early after that many steps with a checkpoint written (for time-sliced jobs);
    the final files are written only when all ``steps`` are done. Returns a summary dict.
    """
    config = resolve_config(cfg)
    if config["num_threads"]:
        torch.set_num_threads(int(config["num_threads"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainer = _Trainer(config, device)  # loads and checks the data before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path, columns = out_dir / CHECKPOINT_FILE, _LOG_COLUMNS[config["mode"]]

    start_step, log = 0, []
    if resume and checkpoint_path.is_file():
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        _check_resumable(checkpoint["config"], config, checkpoint_path)
        trainer.load(checkpoint)
        start_step, log = int(checkpoint["step"]), list(checkpoint["log"])

    def save_checkpoint(step: int) -> None:
        with atomic_path(checkpoint_path) as tmp:
            torch.save(trainer.state(step, log), tmp)
        _write_log(out_dir / LOG_FILE, log, columns)

    end_step = config["steps"] if stop_at_step is None else min(config["steps"], int(stop_at_step))
    started = time.perf_counter()
    progress = tqdm(range(start_step, end_step), initial=start_step, total=config["steps"],
                    desc=f"DiStyleGAN {config['mode']}", disable=not show_progress)
    for step in progress:
        row = trainer.step(step)
        log.append({"step": step + 1, **row})
        progress.set_postfix({key: f"{row[key]:.3f}" for key in ("loss_d", "loss_g") if not math.isnan(row[key])},
                             refresh=False)
        done = step + 1
        if config["sample_every"] and done % config["sample_every"] == 0:
            _save_sample_grid(trainer.sampling_generator, trainer.sample_z, config["sample_per_class"],
                              out_dir / "samples" / f"step_{done:06d}.png")
        if done % config["checkpoint_every"] == 0 and done < end_step:
            save_checkpoint(done)
    progress.close()
    seconds = time.perf_counter() - started
    final_step = max(start_step, end_step)
    if end_step > start_step or not checkpoint_path.is_file():
        save_checkpoint(final_step)

    summary = {"out_dir": str(out_dir), "mode": config["mode"], "step": final_step, "steps": config["steps"],
               "finished": final_step >= config["steps"], "device": str(device), "seconds": seconds,
               "seconds_per_step": seconds / max(1, end_step - start_step)}
    if summary["finished"]:
        _save_sample_grid(trainer.sampling_generator, trainer.sample_z, config["sample_per_class"],
                          out_dir / "samples" / f"step_{final_step:06d}.png")
        save_generator(trainer.sampling_generator, out_dir)
        _write_log(out_dir / LOG_FILE, log, columns)
        write_json(out_dir / "train_config.json", {"config": config, "device": str(device),
                                                   "torch": torch.__version__, "steps_done": final_step})
    return summary


def write_real_data(data_folder, train_split_path, out_path) -> None:
    """The adversarial training set: an ImageFolder tree (or tarball path), else the CIFAR-10 train split."""
    from synthcal.data import read_image_folder
    from synthcal.io import load_image_set, save_image_set

    image_set = read_image_folder(data_folder, labelled=True) if data_folder else load_image_set(train_split_path)
    save_image_set(out_path, image_set.images, image_set.labels, image_set.provenance)


def train_from_files(train_config: dict, real_path, out_dir, threads: int) -> dict:
    """Workflow entry: train with the config entry's settings on ``real_path`` into ``out_dir``."""
    config = {"num_threads": threads, **train_config}
    if config.get("mode", "adversarial") == "adversarial":
        config["real_data"] = str(real_path)
    return train_distylegan(config, out_dir)
