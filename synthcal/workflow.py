"""Glue between the Snakemake rules and the library: the study grid, its paths, config checks, job logging."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from synthcal.calibration import MODEL_SPECIFIC_KINDS

RESULTS = "results"


class ConfigError(ValueError):
    """A config problem found before any job runs; the message names the key."""


class Study:
    """The grid of models × calibration sets × methods selected by ``study`` in the config."""

    def __init__(self, config: dict):
        self.config = config
        selection = config.get("study") or {}
        self.models = list(selection.get("models") or config["models"])
        self.calibrations = list(selection.get("calibration") or config.get("calibration", {}))
        self.methods = list(selection.get("methods") or config.get("methods", {}))
        self.check()

    def check(self) -> None:
        """Checks the JSON schema cannot express: selections name defined entries, local paths exist."""
        for key, chosen, defined in (("models", self.models, self.config["models"]),
                                     ("calibration", self.calibrations, self.config.get("calibration", {})),
                                     ("methods", self.methods, self.config.get("methods", {}))):
            for name in chosen:
                if name not in defined:
                    raise ConfigError(f"study.{key} names {name!r}, which is not defined under `{key}:` "
                                      f"(defined: {sorted(defined)})")
        data = self.config["data"]
        if data.get("source") == "local":
            _must_exist(data.get("local_path"), "data.local_path")
        if data.get("source") == "folder":
            for split in ("train", "test"):
                _must_exist((data.get("folders") or {}).get(split), f"data.folders.{split}", archive_ok=True)
        for name in self.models:
            weights = (self.config["models"][name] or {}).get("weights", {})
            if weights.get("source") == "path":
                _must_exist(weights.get("path"), f"models.{name}.weights.path")
        for name in self.calibrations:
            spec = self.config["calibration"][name]
            for field in ("path", "checkpoint", "repo_path", "model_dir"):
                if spec.get(field):
                    _must_exist(spec[field], f"calibration.{name}.{field}", archive_ok=True)
        gan_training = self.config.get("gan_training") or {}
        if gan_training:
            from synthcal.gan_train import check_train_settings  # imports torch: only when needed
        for name, entry in gan_training.items():
            try:
                check_train_settings((entry or {}).get("train") or {})
            except ValueError as error:
                raise ConfigError(f"gan_training.{name}.train: {error}") from None

    # paths
    def calibration_set(self, calib: str, model: str) -> str:
        if self.config["calibration"][calib]["kind"] in MODEL_SPECIFIC_KINDS:
            return f"{RESULTS}/calib/{calib}/{model}/set.npz"
        return f"{RESULTS}/calib/{calib}/set.npz"

    def training_split_for(self, calib: str) -> str | list:
        """The training split (one path, so the rule sees a single file) for cifar10 sets; else no input."""
        return f"{RESULTS}/data/cifar10_train.npz" if self.config["calibration"][calib]["kind"] == "cifar10" else []

    def generator_files(self, calib: str) -> list[str]:
        """A gan set's local checkpoint file(s), so that replacing the generator rebuilds the set."""
        spec = self.config["calibration"][calib]
        checkpoint = Path(spec.get("checkpoint") or "") if spec["kind"] == "gan" else None
        if checkpoint is None or not checkpoint.exists():
            return []
        if checkpoint.is_file():  # a StyleGAN2-ADA pickle
            return [str(checkpoint)]
        from synthcal.distylegan import CONFIG_FILE, WEIGHTS_FILE

        return [str(checkpoint / name) for name in (WEIGHTS_FILE, CONFIG_FILE) if (checkpoint / name).is_file()]

    def calibration_preview(self, calib: str, model: str) -> str:
        return self.calibration_set(calib, model).replace("set.npz", "preview.png")

    def cells(self) -> list[tuple[str, str, str]]:
        return [(m, c, q) for m in self.models for c in self.calibrations for q in self.methods]

    def fp32_metrics(self) -> list[str]:
        return [f"{RESULTS}/eval/{m}/fp32/metrics.json" for m in self.models]

    def export_infos(self) -> list[str]:
        return [f"{RESULTS}/models/{m}/export.json" for m in self.models]

    def int8_metrics(self) -> list[str]:
        return [f"{RESULTS}/eval/{m}/{c}/{q}/metrics.json" for m, c, q in self.cells()]

    def quantize_infos(self) -> list[str]:
        return [f"{RESULTS}/quantized/{m}/{c}/{q}/quantize.json" for m, c, q in self.cells()]

    def quality(self) -> list[str]:
        return [f"{RESULTS}/quality/{m}/{c}.json" for m in self.models for c in self.calibrations]

    def previews(self) -> list[str]:
        return sorted({self.calibration_preview(c, m) for m in self.models for c in self.calibrations})

    def report(self) -> list[str]:
        return [f"{RESULTS}/report/summary.csv", f"{RESULTS}/report/index.html"]


def _must_exist(path, key: str, archive_ok: bool = False) -> None:
    if not path:
        raise ConfigError(f"{key} is not set")
    candidate = Path(os.path.expanduser(str(path)))
    if candidate.exists():
        return
    if archive_ok:  # a folder inside a tarball: some/archive.tar.gz/inner/dir
        for parent in candidate.parents:
            if parent.is_file():
                return
    raise ConfigError(f"{key}: {path} does not exist")


@contextlib.contextmanager
def job(snakemake):
    """Run a workflow script's body with stdout/stderr (progress bars, NNCF logs) in the rule's log file."""
    log_path = snakemake.log[0] if snakemake.log else None
    threads = int(getattr(snakemake, "threads", 1) or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)
    if log_path is None:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log:
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        handler = logging.StreamHandler(log)
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        try:
            yield
        except Exception as error:
            print(f"ERROR: {error}", file=log)
            raise
        finally:
            logging.getLogger().removeHandler(handler)
            sys.stdout, sys.stderr = saved
