"""Glue between the Snakemake rules and the library: the study grid, its paths, config checks, job logging."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from pathlib import Path

from synthcal.calibration import MODEL_SPECIFIC_KINDS, CalibrationError, check_entry
from synthcal.evaluation.evaluation_sets import DEFAULT_TEST_SET

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
        self.defined_test_sets = (config.get("evaluation") or {}).get("sets") or {}
        chosen_sets = selection.get("test_sets")
        self.test_sets = [DEFAULT_TEST_SET, *(self.defined_test_sets if chosen_sets is None else chosen_sets)]
        self._model_specs: dict = {}
        self.classes: list[str] = []
        self.check()
        self.check_evaluation_sets()

    def check(self) -> None:
        """Checks the JSON schema cannot express: selections name defined entries, local paths exist."""
        for key, section, chosen, defined in (
                ("models", "models", self.models, self.config["models"]),
                ("calibration", "calibration", self.calibrations, self.config.get("calibration", {})),
                ("methods", "methods", self.methods, self.config.get("methods", {})),
                ("test_sets", "evaluation.sets", self.test_sets[1:], self.defined_test_sets)):
            for name in chosen:
                if name not in defined:
                    raise ConfigError(f"study.{key} names {name!r}, which is not defined under `{section}:` "
                                      f"(defined: {sorted(defined)})")
        data = self.config["data"]
        if data.get("source") == "local":
            _must_exist(data.get("local_path"), "data.local_path")
        if data.get("source") == "folder":
            for split in ("train", "test"):
                _must_exist((data.get("folders") or {}).get(split), f"data.folders.{split}", archive_ok=True)
        self._check_models()
        for name in self.calibrations:
            spec = self.config["calibration"][name]
            try:
                check_entry(name, spec)
            except CalibrationError as error:
                raise ConfigError(str(error)) from None
            for field in ("path", "checkpoint", "repo_path", "model_dir"):
                if spec.get(field):
                    _must_exist(spec[field], f"calibration.{name}.{field}", archive_ok=True)
            if spec["kind"] in MODEL_SPECIFIC_KINDS:
                for model in self.models:
                    if not self.model_spec(model).has_torch:
                        raise ConfigError(
                            f"calibration.{name} (kind {spec['kind']}) inverts a PyTorch network, but models.{model} "
                            f"is kind {self.model_spec(model).kind}; give that model as kind torch, or leave "
                            f"{name} out of study.calibration")
        gan_training = self.config.get("gan_training") or {}
        if gan_training:
            from synthcal.gan.gan_train import check_train_settings  # imports torch: only when needed
        for name, entry in gan_training.items():
            try:
                check_train_settings((entry or {}).get("train") or {})
            except ValueError as error:
                raise ConfigError(f"gan_training.{name}.train: {error}") from None
        self._check_side_env_entries()

    def _check_models(self) -> None:
        """Every model entry resolves (files, factory, input size); selected ones have one output per class."""
        from synthcal.data import DataError, dataset_classes

        try:
            self.classes = dataset_classes(self.config["data"])
        except DataError as error:
            raise ConfigError(str(error)) from None
        for name in self.config["models"]:  # every entry must make sense, selected or not
            self.model_spec(name)
        for name in self.models:
            spec = self.model_spec(name)
            if spec.num_outputs is not None and spec.num_outputs != len(self.classes):
                raise ConfigError(f"models.{name} has {spec.num_outputs} outputs but the dataset has "
                                  f"{len(self.classes)} classes ({', '.join(self.classes)}); set data.classes or "
                                  "use a model trained on these classes")

    def model_spec(self, name: str):
        """The resolved ``models.<name>`` entry (kind, input spec, output count); checked once per run."""
        from synthcal.models import ModelConfigError, model_spec

        cache = self._model_specs
        if name not in cache:
            if name not in self.config["models"]:
                raise ConfigError(f"model {name!r} is not defined under `models:` (defined: "
                                  f"{sorted(self.config['models'])})")
            try:
                cache[name] = model_spec(name, self.config["models"][name])
            except ModelConfigError as error:
                raise ConfigError(str(error)) from None
        return cache[name]

    def check_evaluation_sets(self) -> None:
        """``evaluation.sets``: names that cannot clash with the study's test split, sources that exist."""
        for name, spec in self.defined_test_sets.items():
            if name == DEFAULT_TEST_SET:
                raise ConfigError(f"evaluation.sets.{name}: {DEFAULT_TEST_SET!r} is the study's own test split "
                                  "(from `data:`); give the extra set another name")
            if spec.get("source") == "folder":
                _must_exist(spec.get("path"), f"evaluation.sets.{name}.path", archive_ok=True)
            if spec.get("source") == "local":
                _must_exist(spec.get("local_path"), f"evaluation.sets.{name}.local_path")

    # paths
    def model_size(self, model: str) -> str:
        from synthcal.models.preprocessing import size_name

        return size_name(self.model_spec(model).input.size)

    def calibration_set(self, calib: str, model: str) -> str:
        """Sets are made at the model's input size; model-specific kinds (datafree) once per model."""
        size = self.model_size(model)
        if self.config["calibration"][calib]["kind"] in MODEL_SPECIFIC_KINDS:
            return f"{RESULTS}/calib/{calib}/{size}/{model}/set.npz"
        return f"{RESULTS}/calib/{calib}/{size}/set.npz"

    def calibration_inputs(self, calib: str) -> list[str]:
        """What a set is built from besides the training split: a folder's files (rebuilt when they change, appear or
        go), the tarball it lies in, or a generator's checkpoint files."""
        spec = self.config["calibration"][calib]
        if spec["kind"] == "folder":
            return _folder_files(spec["path"])
        return self.generator_files(calib)

    def model_entry(self, model: str) -> dict:
        """What a model's jobs need to resolve it again: its name and config entry."""
        return {"name": model, "entry": self.config["models"][model] or {}}

    def network_files(self, model: str) -> list[str]:
        """The network a model's IR is made from: fetched to results/weights/, or an IR read in place."""
        spec = self.model_spec(model)
        if spec.network_suffix is None:
            return spec.module.local_files(spec)
        return [f"{RESULTS}/weights/{model}.{spec.network_suffix}"]

    def network_info(self, model: str) -> list[str]:
        spec = self.model_spec(model)
        return [] if spec.network_suffix is None else [f"{RESULTS}/weights/{model}.{spec.network_suffix}.json"]

    def model_local_files(self, model: str) -> list[str]:
        """Local files the fetch job reads (factory .py, checkpoint, ONNX), so changing them re-runs it."""
        spec = self.model_spec(model)
        return spec.module.local_files(spec)

    def training_split_for(self, calib: str) -> str | list:
        """The training split (one path, so the rule sees a single file) for cifar10 sets; else no input."""
        return f"{RESULTS}/data/train.npz" if self.config["calibration"][calib]["kind"] == "cifar10" else []

    def generator_files(self, calib: str) -> list[str]:
        """A gan set's local checkpoint file(s), so that replacing the generator rebuilds the set."""
        spec = self.config["calibration"][calib]
        checkpoint = Path(spec.get("checkpoint") or "") if spec["kind"] == "gan" else None
        if checkpoint is None or not checkpoint.exists():
            return []
        if checkpoint.is_file():  # a StyleGAN2-ADA pickle
            return [str(checkpoint)]
        from synthcal.gan.distylegan import CONFIG_FILE, WEIGHTS_FILE

        return [str(checkpoint / name) for name in (WEIGHTS_FILE, CONFIG_FILE) if (checkpoint / name).is_file()]

    def gan_judge(self, gan: str) -> str:
        return (self.config["gan_training"][gan] or {}).get("judge", "resnet20")

    def judge_ir(self, gan: str) -> str:
        """The FP32 IR of the classifier that judges a trained generator (a model under `models:`)."""
        return f"{RESULTS}/models/{self.gan_judge(gan)}/fp32.xml"

    def calibration_preview(self, calib: str, model: str) -> str:
        return self.calibration_set(calib, model).replace("set.npz", "preview.png")

    def cells(self) -> list[tuple[str, str, str]]:
        return [(m, c, q) for m in self.models for c in self.calibrations for q in self.methods]

    def export_infos(self) -> list[str]:
        return [f"{RESULTS}/models/{m}/export.json" for m in self.models]

    def quantize_infos(self) -> list[str]:
        return [f"{RESULTS}/quantized/{m}/{c}/{q}/quantize.json" for m, c, q in self.cells()]

    def quality(self) -> list[str]:
        return [f"{RESULTS}/quality/{m}/{c}.json" for m in self.models for c in self.calibrations]

    def previews(self) -> list[str]:
        return sorted({self.calibration_preview(c, m) for m in self.models for c in self.calibrations})

    # evaluations on every test set: the study's split (paths above) and each of `evaluation.sets`
    def evaluation_options(self) -> dict:
        """The evaluator's settings (precision hint, batch size): adding a test set does not re-run evaluations."""
        return {k: v for k, v in (self.config.get("evaluation") or {}).items() if k != "sets"}

    def evaluation_set_spec(self, test_set: str) -> dict:
        return self.config["evaluation"]["sets"][test_set]

    def fp32_eval_dir(self, model: str, test_set: str = DEFAULT_TEST_SET) -> str:
        base = f"{RESULTS}/eval/{model}/fp32"
        return base if test_set == DEFAULT_TEST_SET else f"{base}/sets/{test_set}"

    def int8_eval_dir(self, model: str, calib: str, method: str, test_set: str = DEFAULT_TEST_SET) -> str:
        base = f"{RESULTS}/eval/{model}/{calib}/{method}"
        return base if test_set == DEFAULT_TEST_SET else f"{base}/sets/{test_set}"

    def evaluations(self) -> list[dict]:
        """Every evaluation the report reads: FP32 per model and INT8 per cell, on every test set, with its files."""
        records = []
        for test_set in self.test_sets:
            for model in self.models:
                records.append({"test_set": test_set, "model": model, "precision": "fp32", "calibration": "",
                                "method": "", "dir": self.fp32_eval_dir(model, test_set)})
            for model, calib, method in self.cells():
                records.append({"test_set": test_set, "model": model, "precision": "int8", "calibration": calib,
                                "method": method, "dir": self.int8_eval_dir(model, calib, method, test_set),
                                "quantize": f"{RESULTS}/quantized/{model}/{calib}/{method}/quantize.json"})
        for record in records:
            record.update(metrics=f"{record['dir']}/metrics.json", predictions=f"{record['dir']}/predictions.npz")
        return records

    def evaluation_files(self, kind: str) -> list[str]:
        """``metrics`` or ``predictions`` of every evaluation (all test sets)."""
        return [record[kind] for record in self.evaluations()]

    def report_study(self) -> dict:
        """What the report script needs to know about the grid (passed as the rule's params)."""
        return {"models": self.models, "calibrations": self.calibrations, "methods": self.methods,
                "test_sets": self.test_sets, "evaluations": self.evaluations(),
                "timing": {model: self.timing_file(model) for model in self.models}}

    # speed: one timing job per model (rule time_model), alone on the machine; the report's speed-ups
    def timed_irs(self, model: str) -> list[dict]:
        """The IRs rule time_model times together: the model's FP32 IR first, then the INT8 IR of each cell."""
        irs = [{"name": "fp32", "precision": "fp32", "calibration": "", "method": "",
                "xml": f"{RESULTS}/models/{model}/fp32.xml"}]
        irs += [{"name": f"{calib}/{method}", "precision": "int8", "calibration": calib, "method": method,
                 "xml": f"{RESULTS}/quantized/{model}/{calib}/{method}/int8.xml"}
                for cell_model, calib, method in self.cells() if cell_model == model]
        return irs

    def timing_inputs(self, model: str) -> list[str]:
        """Every file of the IRs in ``timed_irs`` (.xml and .bin)."""
        return [path for ir in self.timed_irs(model) for path in (ir["xml"], ir["xml"][:-len(".xml")] + ".bin")]

    def timing_options(self) -> dict:
        """`timing:` (repeats, images) with the evaluator's batch size and precision hint, and the seed."""
        from synthcal.evaluation.timing import DEFAULT_IMAGES, DEFAULT_REPEATS

        timing, evaluation = self.config.get("timing") or {}, self.config.get("evaluation") or {}
        return {"repeats": int(timing.get("repeats", DEFAULT_REPEATS)),
                "images": int(timing.get("images", DEFAULT_IMAGES)),
                "batch_size": int(evaluation.get("batch_size", 100)),
                "precision_hint": evaluation.get("precision_hint", "f32"), "seed": int(self.config.get("seed", 0))}

    @staticmethod
    def timing_file(model: str) -> str:
        return f"{RESULTS}/timing/{model}.json"

    def timing_files(self) -> list[str]:
        return [self.timing_file(model) for model in self.models]

    def report(self) -> list[str]:
        return [f"{RESULTS}/report/summary.csv", f"{RESULTS}/report/recommendation.csv",
                f"{RESULTS}/report/index.html"]

    # the side environment (synthcal/sideenv.py): POT methods and the Datumaro fractal backend
    def _check_side_env_entries(self) -> None:
        """Every ``engine: pot`` method and each selected ``backend: datumaro`` set, before any job."""
        from synthcal.calibration.datumaro_fractal import DatumaroError, check_datumaro_spec
        from synthcal.quantization.pot import PotError, check_pot_method

        try:
            for name in self.methods_of_engine("pot"):
                check_pot_method(name, self.config["methods"][name])
            for name in set(self.datumaro_sets()) & set(self.calibrations):
                check_datumaro_spec(name, self.config["calibration"][name])
        except (PotError, DatumaroError) as error:
            raise ConfigError(str(error)) from None

    def methods_of_engine(self, engine: str) -> list[str]:
        """Defined method names that run on ``engine`` (nncf or pot)."""
        from synthcal.quantization import engine_of

        return [name for name, method in (self.config.get("methods") or {}).items() if engine_of(method) == engine]

    def datumaro_sets(self) -> list[str]:
        """Defined fractal sets made by Datumaro's generator in the side environment."""
        return [name for name, spec in (self.config.get("calibration") or {}).items()
                if spec.get("kind") == "fractal" and spec.get("backend") == "datumaro"]

    @staticmethod
    def wildcard_choice(names: list[str]) -> str:
        """A wildcard constraint matching exactly ``names`` (and nothing when there are none)."""
        return "|".join(re.escape(name) for name in sorted(names)) or "(?!)"

    def entry_json(self, section: str, name: str) -> str:
        """A config entry as JSON, the argument of a side-environment job (and tracked as its params)."""
        return json.dumps(self.config[section][name], sort_keys=True)

    def needs_side_env(self) -> bool:
        return bool(set(self.methods) & set(self.methods_of_engine("pot"))
                    or set(self.calibrations) & set(self.datumaro_sets()))

    @staticmethod
    def side_env_files(conda: bool) -> list[str]:
        """Input of side-environment jobs: its marker (rule side_env builds it), or nothing when conda does."""
        from synthcal.sideenv import side_env_marker

        return [] if conda else [str(side_env_marker())]

    @staticmethod
    def side_python(conda: bool) -> str:
        from synthcal.sideenv import side_python

        return "python" if conda else str(side_python())

    @staticmethod
    def side_env_build() -> dict:
        """What rule side_env needs: the lock file, the checkout (for make) and where the venv goes."""
        from synthcal.sideenv import LOCK_FILE, REPO, side_env_dir, side_env_marker

        return {"lock": str(LOCK_FILE), "repo": str(REPO), "env_dir": str(side_env_dir()),
                "marker": str(side_env_marker())}


def _folder_files(path: str) -> list[str]:
    """Every image file under a folder (sorted), or the tarball a folder path points into."""
    from synthcal.data import containing_archive, image_files

    folder = Path(os.path.expanduser(path))
    if folder.is_dir():
        return [str(file) for file in image_files(folder)]
    archive = containing_archive(folder)
    return [str(archive)] if archive else []


def _must_exist(path, key: str, archive_ok: bool = False) -> None:
    if not path:
        raise ConfigError(f"{key} is not set")
    candidate = Path(os.path.expanduser(str(path)))
    if candidate.exists():
        return
    if archive_ok:  # a folder inside a tarball: some/archive.tar.gz/inner/dir
        from synthcal.data import containing_archive

        if containing_archive(candidate):
            return
    raise ConfigError(f"{key}: {path} does not exist")


@contextlib.contextmanager
def job(snakemake):
    """Run a workflow script's body with stdout/stderr (progress bars, NNCF logs) in the rule's log file."""
    log_path = snakemake.log[0] if snakemake.log else None
    threads = int(getattr(snakemake, "threads", 1) or 1)
    # torch reads OMP_NUM_THREADS when imported; jobs that only run IRs never import it (about 1.3 s each)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
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
