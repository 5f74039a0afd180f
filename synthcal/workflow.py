"""Glue between the Snakemake rules and the library: the study grid, its paths, config checks, job logging."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import re
import sys
from pathlib import Path

from synthcal.calibration import MODEL_SPECIFIC_KINDS, REAL_DATA_KINDS, CalibrationError, check_entry
from synthcal.evaluation.evaluation_sets import DEFAULT_TEST_SET

RESULTS = "results"
AUTO_ORACLE_CSV = f"{RESULTS}/report/auto_vs_oracle.csv"
AUTO_BASELINE_METHOD = "default_full_bc"  # what auto_vs_oracle.csv compares the pick with besides the oracle


class ConfigError(ValueError):
    """A config problem found before any job runs; the message names the key."""


# Names of models, calibration sets, methods, extra test sets and trained generators become folder and file names
# under results/: one rule for all of them, checked before any job (and before the schema).
NAME_PATTERN = "[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
RESERVED_NAMES = ("fp32", "sets")  # fixed folders beside the names: results/eval/{model}/fp32/sets/{test_set}/
NAMED_SECTIONS = ("models", "calibration", "methods", "evaluation.sets", "gan_training")


def name_problem(name) -> str | None:
    """Why ``name`` cannot name an entry (None when it can)."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        return ("not a usable name: names become folder names under results/, so they are 1-64 letters, digits, "
                "'_' or '-', starting with a letter or digit (no '/', '.', spaces)")
    if name.lower() in RESERVED_NAMES:
        return (f"a reserved name: results/ has fixed folders of that name beside the entries' own "
                f"(reserved: {', '.join(RESERVED_NAMES)}, in any case)")
    return None


def check_names(config: dict) -> None:
    """Every key of ``models``, ``calibration``, ``methods``, ``evaluation.sets``, ``gan_training`` follows the
    name rule (``NAME_PATTERN``, not one of ``RESERVED_NAMES``); the error names the key and the rule."""
    for section in NAMED_SECTIONS:
        entries = config
        for part in section.split("."):
            entries = entries.get(part) if isinstance(entries, dict) else None
        for name in entries if isinstance(entries, dict) else ():
            problem = name_problem(name)
            if problem:
                raise ConfigError(f"{section} key {name!r}: {problem}")


NO_JOB_OPTIONS = ("--unlock", "--lint", "--cleanup-metadata", "--cm", "--list-rules", "--list-target-rules")


def runs_one_submitted_job(argv=None) -> bool:
    """Whether this Snakemake runs one job an executor submitted (``--target-jobs``, e.g. on a SLURM node): the
    submitting run listed the user data already; the job's own input functions list what it reads."""
    return _has_option(("--target-jobs",), argv)


def runs_no_job(argv=None) -> bool:
    """Whether this Snakemake invocation executes no job and builds no DAG (``--unlock``, ``--lint``, ...): the
    Snakefile then resolves models without importing user code (``synthcal.models.allow_user_code``). Snakemake
    parses the Snakefile the same way in every mode, so its command line is the only place that says."""
    return _has_option(NO_JOB_OPTIONS, argv)


def _has_option(options: tuple[str, ...], argv=None) -> bool:
    """Whether Snakemake's command line (``argv``, default ``sys.argv``) holds one of ``options`` (or ``option=…``)."""
    return any(arg.split("=", 1)[0] in options for arg in (sys.argv if argv is None else argv))


def default_configfile(snakefile_dir: str | os.PathLike) -> str:
    """The study's base config: ``config.yaml`` in the working directory, else the one beside the Snakefile
    (``snakemake -s checkout/Snakefile`` run elsewhere), said on stderr. Snakemake would silently skip a missing
    ``configfile:`` when ``--configfile`` is given, and that file only extends the base."""
    if Path("config.yaml").is_file():
        return "config.yaml"
    beside = Path(snakefile_dir) / "config.yaml"
    if beside.is_file():
        print(f"synthcal: no config.yaml in {Path.cwd()}; using {beside} (beside the Snakefile)", file=sys.stderr)
        return str(beside)
    raise ConfigError(f"no config.yaml in {Path.cwd()} nor beside the Snakefile ({snakefile_dir}); it is the "
                      "study's base config, which --configfile files extend")


def validate_config(config: dict, schema: str | os.PathLike) -> None:
    """The name rule, then Snakemake's JSON-schema validation (which fills in defaults), its error reduced to one
    line that starts with the offending key path instead of a dump of the schema."""
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    check_names(config)
    _refuse_non_finite(config, "")
    try:
        validate(config, str(schema))
    except WorkflowError as error:
        cause = error.__cause__ or error.__context__  # raised while handling jsonschema's ValidationError
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        best = jsonschema.exceptions.best_match([cause])
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in best.absolute_path)
        message = best.message if len(best.message) <= 300 else best.message[:300] + " …"
        raise ConfigError(f"config key {path.lstrip('.') or '(top level)'}: {message} "
                          f"(schema: {Path(schema).name})") from None


def _refuse_non_finite(value, path: str) -> None:
    """YAML's .nan and .inf pass every schema bound (NaN compares false, inf exceeds no exclusive maximum): refused
    anywhere in the config, naming the key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {path.lstrip('.') or '(top level)'}: {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_non_finite(item, f"{path}[{index}]")


class Study:
    """The cells (model, calibration set, method) selected by ``study`` in the config: one grid (a mapping) or the
    union of several (a list of mappings), each ``models × calibration × methods`` evaluated on its ``test_sets``.

    ``models``, ``calibration``, ``methods`` and ``test_sets`` are unions over the grids, in order of first
    appearance; ``cells()`` is the union of the grids' cells, never their full product.
    """

    def __init__(self, config: dict):
        self.config = config
        check_names(config)
        self.defined_test_sets = (config.get("evaluation") or {}).get("sets") or {}
        self.grids = study_grids(config)
        self.models = _union(grid["models"] for grid in self.grids)
        self.calibrations = _union(grid["calibration"] for grid in self.grids)
        self.methods = _union(grid["methods"] for grid in self.grids)
        self.test_sets = [DEFAULT_TEST_SET, *_union(grid["test_sets"] for grid in self.grids)]
        order = {name: index for names in (self.models, self.calibrations, self.methods)
                 for index, name in enumerate(names)}
        # cell -> the extra test sets it is evaluated on (the study's own split always)
        cell_sets: dict[tuple[str, str, str], set[str]] = {}
        for grid in self.grids:
            for cell in itertools.product(grid["models"], grid["calibration"], grid["methods"]):
                cell_sets.setdefault(cell, set()).update(grid["test_sets"])
        self._cells = sorted(cell_sets, key=lambda cell: tuple(order[name] for name in cell))
        self._cell_test_sets = {cell: [t for t in self.test_sets if t == DEFAULT_TEST_SET or t in sets]
                                for cell, sets in cell_sets.items()}
        self._model_test_sets = {model: [t for t in self.test_sets if t == DEFAULT_TEST_SET or any(
            t in grid["test_sets"] for grid in self.grids if model in grid["models"])] for model in self.models}
        self._model_specs: dict = {}
        self._manifests: dict[str, str] = {}
        self.classes: list[str] = []
        self.check()
        self.check_evaluation_sets()
        self.check_auto_methods()
        self.check_ignored_scopes()

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
            # the train split only feeds cifar10-kind sets: a study of a test folder alone (ImageNet's val) needs none
            from_train = [name for name in self.calibrations
                          if (self.config.get("calibration") or {}).get(name, {}).get("kind") == "cifar10"]
            if from_train and not (data.get("folders") or {}).get("train"):
                raise ConfigError(f"data.folders.train is not set, and the study's calibration set(s) {from_train} "
                                  "(kind cifar10) are drawn from the train split: set it, or leave them out of "
                                  "study.calibration")
            for split in ("train", "test") if from_train or (data.get("folders") or {}).get("train") else ("test",):
                _must_exist((data.get("folders") or {}).get(split), f"data.folders.{split}", archive_ok=True)
        self._check_models()
        for name, spec in (self.config.get("calibration") or {}).items():  # keys of every entry, selected or not
            try:
                check_entry(name, spec)
            except CalibrationError as error:
                raise ConfigError(str(error)) from None
        for name in self.calibrations:  # files only of the selected ones (an unselected set may be elsewhere)
            spec = self.config["calibration"][name]
            for field in ("path", "checkpoint", "repo_path", "model_dir"):
                if spec.get(field):
                    _must_exist(spec[field], f"calibration.{name}.{field}", archive_ok=True)
            if spec["kind"] == "gan" and len(self.classes) != 10:
                raise ConfigError(f"calibration.{name}: its {spec.get('generator', 'distylegan')} generator is "
                                  f"class-conditional on CIFAR-10's 10 classes, but the dataset has "
                                  f"{len(self.classes)} classes; leave {name} out of study.calibration for this "
                                  "dataset")
            if spec["kind"] in MODEL_SPECIFIC_KINDS:
                for model in dict.fromkeys(m for m, c, _ in self._cells if c == name):
                    if not self.model_spec(model).has_torch:
                        raise ConfigError(
                            f"calibration.{name} (kind {spec['kind']}) inverts a PyTorch network, but models.{model} "
                            f"{self.model_spec(model).torch_problem}, or leave {name} out of study.calibration")
        for _model, calib, method in self._cells:  # crossfold: k INT8 models per cell, made by NNCF's plain methods
            entry = self.config["methods"][method] or {}
            if self.config["calibration"][calib]["kind"] == "crossfold" and (
                    entry.get("engine", "nncf") != "nncf" or entry.get("algorithm") == "auto"):
                raise ConfigError(f"calibration.{calib} (kind crossfold) with methods.{method}: crossfold cells run "
                                  "NNCF's default or accuracy_aware (one INT8 model per fold); leave this method out "
                                  f"of the grid that has {calib}")
        gan_training = self.config.get("gan_training") or {}
        if gan_training:
            from synthcal.gan.gan_train import check_train_settings  # imports torch: only when needed
        for name, entry in gan_training.items():
            try:
                check_train_settings((entry or {}).get("train") or {})
            except ValueError as error:
                raise ConfigError(f"gan_training.{name}.train: {error}") from None
        self._check_side_env_entries()
        self._check_report()

    def real_calibrations(self) -> list[str]:
        """The study's calibration sets made of real images (kinds ``REAL_DATA_KINDS``)."""
        return [name for name in self.calibrations if self.config["calibration"][name]["kind"] in REAL_DATA_KINDS]

    def _check_report(self) -> None:
        """``report.reference_calibration`` names one of the study's real-data calibration sets (the report compares
        every cell without real images with it)."""
        reference = (self.config.get("report") or {}).get("reference_calibration")
        if not reference:
            return
        real = self.real_calibrations()
        available = (f"name one of the study's real-data sets: {real}" if real else
                     "the study has no real-data set (kinds " + ", ".join(REAL_DATA_KINDS) + "): add one to "
                     "study.calibration, or leave report.reference_calibration out")
        if reference not in self.calibrations:
            where = ("is defined under `calibration:` but not selected by study.calibration"
                     if reference in (self.config.get("calibration") or {}) else "is not defined under `calibration:`")
            raise ConfigError(f"report.reference_calibration: {reference!r} {where}; {available}")
        kind = self.config["calibration"][reference]["kind"]
        if kind not in REAL_DATA_KINDS:
            raise ConfigError(f"report.reference_calibration: {reference!r} is kind {kind}, not real images; "
                              f"{available}")

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
        """What a set is built from besides the training split: a folder's manifest (``source_manifest``), or a
        generator's checkpoint files."""
        spec = self.config["calibration"][calib]
        if spec["kind"] == "folder":
            return [self.source_manifest("calibration", calib, spec["path"], f"calibration.{calib}.path")]
        return self.generator_files(calib)

    def source_manifest(self, section: str, name: str, path, key: str, images_only: bool = True) -> str:
        """The manifest of the user data a job reads (synthcal/manifest.py), brought up to date once per DAG build:
        adding, removing, replacing or relabelling a file rebuilds what depends on it; a newer mtime alone does not."""
        from synthcal import manifest
        from synthcal.data import IMAGE_SUFFIXES

        target = f"{manifest.MANIFEST_DIR}/{section}/{name}.json"
        if target not in self._manifests:
            try:
                self._manifests[target] = manifest.update(path, target, key, IMAGE_SUFFIXES if images_only else None)
            except manifest.ManifestError as error:
                raise ConfigError(str(error)) from None
        return self._manifests[target]

    def update_manifests(self) -> None:
        """Every manifest the study's jobs may take, brought up to date before the DAG is built: Snakemake reads an
        error of an input function as "no job makes this file" and would keep the old outputs without a word (a
        broken link, an unreadable folder)."""
        for split in ("train", "test"):
            self.data_inputs(split)
        for test_set in self.test_sets[1:]:
            self.evaluation_set_inputs(test_set)
        for calib in self.calibrations:
            if self.config["calibration"][calib]["kind"] == "folder":
                self.calibration_inputs(calib)
        for gan, entry in (self.config.get("gan_training") or {}).items():  # trained only when named: where present
            if (entry or {}).get("data_folder") and Path((entry or {})["data_folder"]).expanduser().exists():
                self.gan_data_inputs(gan)

    def data_inputs(self, split: str) -> list[str]:
        """Input of rule dataset_split: the manifest of ``data.folders.<split>`` or ``data.local_path`` (a
        download is checked by its md5 instead)."""
        data = self.config["data"]
        source = data.get("source", "download")
        if source == "folder" and (data.get("folders") or {}).get(split):
            return [self.source_manifest("data", split, data["folders"][split], f"data.folders.{split}")]
        if source == "local" and data.get("local_path"):
            return [self.source_manifest("data", "local", data["local_path"], "data.local_path", images_only=False)]
        return []

    def evaluation_set_inputs(self, test_set: str) -> list[str]:
        """Input of rule evaluation_set: the manifest of its folder or local batches."""
        spec = self.evaluation_set_spec(test_set)
        if spec.get("source") == "folder":
            return [self.source_manifest("evaluation", test_set, spec["path"], f"evaluation.sets.{test_set}.path")]
        if spec.get("source") == "local":
            return [self.source_manifest("evaluation", test_set, spec["local_path"],
                                         f"evaluation.sets.{test_set}.local_path", images_only=False)]
        return []

    def gan_data_inputs(self, gan: str) -> list[str]:
        """Input of rule gan_real_data: the manifest of ``gan_training.<gan>.data_folder`` where one is given."""
        folder = (self.config["gan_training"][gan] or {}).get("data_folder")
        return [self.source_manifest("gan_training", gan, folder, f"gan_training.{gan}.data_folder")] if folder else []

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
        """Local files the fetch job reads (factory .py, checkpoint, ONNX), so changing them re-runs it. A file whose
        sha256 the entry pins is marked ancient: its content cannot change without failing the fetch, so a newer mtime
        alone (a copy, a re-extracted archive) re-runs nothing downstream."""
        spec = self.model_spec(model)
        pinned = _pinned_paths(self.config["models"][model] or {})
        checkpoint = (self.config["models"][model] or {}).get("checkpoint") or {}
        if checkpoint.get("package_file") and checkpoint.get("sha256"):  # an installed package's file, pinned
            pinned |= set(spec.module.local_files(spec)) - {checkpoint.get("path")}
        return [_ancient(path) if path in pinned else path for path in spec.module.local_files(spec)]

    def training_split_for(self, calib: str) -> str | list:
        """The split a set is drawn from (one path, so the rule sees a single file): the training split for cifar10
        sets, the test split for crossfold sets (each image scored only by a model not calibrated on it); else none."""
        kind = self.config["calibration"][calib]["kind"]
        return {"cifar10": f"{RESULTS}/data/train.npz", "crossfold": f"{RESULTS}/data/test.npz"}.get(kind, [])

    def reference_split(self) -> str:
        """The images the quality step's reference features come from: the training split, else the test split
        (a study of a test folder alone; the features only describe what natural images look like to the model)."""
        data = self.config["data"]
        has_train = data.get("source", "download") != "folder" or (data.get("folders") or {}).get("train")
        return f"{RESULTS}/data/{'train' if has_train else 'test'}.npz"

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
        """Every (model, calibration, method) of the study: the union of its grids."""
        return list(self._cells)

    def calibrated_pairs(self) -> list[tuple[str, str]]:
        """(model, calibration set) pairs some cell uses."""
        return list(dict.fromkeys((m, c) for m, c, _ in self._cells))

    def export_infos(self) -> list[str]:
        return [f"{RESULTS}/models/{m}/export.json" for m in self.models]

    def quantize_infos(self) -> list[str]:
        return [f"{RESULTS}/quantized/{m}/{c}/{q}/quantize.json" for m, c, q in self.cells()]

    def quality(self) -> list[str]:
        return [f"{RESULTS}/quality/{m}/{c}.json" for m, c in self.calibrated_pairs()]

    def previews(self) -> list[str]:
        return sorted({self.calibration_preview(c, m) for m, c in self.calibrated_pairs()})

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
                if test_set not in self._model_test_sets[model]:
                    continue
                records.append({"test_set": test_set, "model": model, "precision": "fp32", "calibration": "",
                                "method": "", "dir": self.fp32_eval_dir(model, test_set)})
            for model, calib, method in self.cells():
                if test_set not in self._cell_test_sets[(model, calib, method)]:
                    continue
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
                "cells": [list(cell) for cell in self.cells()], "test_sets": self.test_sets,
                "evaluations": self.evaluations(),
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
                f"{RESULTS}/report/index.html"] + self.auto_oracle_csv()

    # method `auto` (synthcal/quantization/auto.py): candidates scored on held-out synthetic images, then the oracle
    def check_ignored_scopes(self) -> None:
        """Where a model's FP32 IR is there already (a rerun), each of its cells' methods' ``ignored_scope`` must name
        its layers: checked here, before the DAG, because Snakemake reads an error of a job's input function as "no
        job makes this file" and keeps the cell's old outputs without a word."""
        from synthcal.quantization.ignored_scope import IgnoredScopeError, check_ignored_scope, ir_layer_names

        for model, method in dict.fromkeys((model, method) for model, _, method in self._cells):
            scope = (self.config["methods"].get(method) or {}).get("ignored_scope")
            xml = f"{RESULTS}/models/{model}/fp32.xml"
            if scope and Path(xml).is_file():
                try:
                    check_ignored_scope(method, scope, ir_layer_names(xml), xml)
                except IgnoredScopeError as error:
                    raise ConfigError(str(error)) from None

    def auto_methods(self) -> list[str]:
        """Defined method names with ``algorithm: auto``."""
        return [name for name, method in (self.config.get("methods") or {}).items()
                if (method or {}).get("algorithm") == "auto" and (method or {}).get("engine", "nncf") == "nncf"]

    def auto_method_pattern(self) -> str:
        """Wildcard constraint of rule quantize_auto: the auto methods' names (none: a pattern matching nothing)."""
        return "|".join(re.escape(name) for name in self.auto_methods()) or "(?!)"

    def check_auto_methods(self) -> None:
        """Every auto method, selected or not: its candidates, a holdout set that is synthetic (and, where selected,
        not a study set), and a ``real_holdout`` (where given) that is real data (and not a study set)."""
        from synthcal.quantization.auto import AutoMethodError, check_auto_method

        for name in self.auto_methods():  # every auto entry, selected or not; the study's sets only where selected
            method = self.config["methods"][name]
            selected = name in self.methods
            try:
                check_auto_method(name, method, self.config.get("calibration") or {},
                                  self.calibrations if selected else [])
                for key in ("holdout", "real_holdout"):
                    if method.get(key):
                        check_entry(method[key], self.config["calibration"][method[key]])
            except (AutoMethodError, CalibrationError) as error:
                raise ConfigError(str(error)) from None
            if selected and self.config["calibration"][method["holdout"]]["kind"] in MODEL_SPECIFIC_KINDS:
                for model in dict.fromkeys(m for m, _, q in self._cells if q == name):
                    if not self.model_spec(model).has_torch:
                        raise ConfigError(f"methods.{name}.holdout {method['holdout']!r} inverts a PyTorch network, "
                                          f"but models.{model} {self.model_spec(model).torch_problem}")

    def holdout_set(self, wildcards) -> str:
        """Input function of rule quantize_auto: the held-out set its proxy scores candidates on (synthetic, or the
        method's ``real_holdout`` where the cell is calibrated on real images)."""
        from synthcal.quantization.auto import holdout_of

        method = self.config["methods"][wildcards.method]
        return self.calibration_set(holdout_of(method, self.config["calibration"][wildcards.calib]["kind"]),
                                    wildcards.model)

    def auto_calibration_set(self, wildcards) -> str:
        """Input function of rule quantize_auto: the cell's calibration set."""
        return self.calibration_set(wildcards.calib, wildcards.model)

    def auto_cells(self) -> list[tuple[str, str, str]]:
        return [cell for cell in self._cells if cell[2] in self.auto_methods()]

    def test_set_file(self, test_set: str) -> str:
        return f"{RESULTS}/data/test.npz" if test_set == DEFAULT_TEST_SET else f"{RESULTS}/data/eval/{test_set}.npz"

    def auto_candidates_eval(self, wildcards) -> dict:
        """Inputs of rule evaluate_auto_candidates: the cell's candidates (after its choice), the test set, FP32."""
        return {"candidates": f"{RESULTS}/quantized/{wildcards.model}/{wildcards.calib}/{wildcards.method}/candidates",
                "quantize_info": f"{RESULTS}/quantized/{wildcards.model}/{wildcards.calib}/{wildcards.method}/"
                                 "quantize.json",
                "test": self.test_set_file(wildcards.test_set),
                "fp32_predictions": f"{self.fp32_eval_dir(wildcards.model, wildcards.test_set)}/predictions.npz"}

    def auto_oracle_records(self) -> list[dict]:
        """Per auto cell and test set: the files rule auto_vs_oracle reads (its candidates on the real test set, the
        pick's and FP32's predictions, and ``default_full_bc``'s on the same set where the study has that cell)."""
        records = []
        for model, calib, method in self.auto_cells():
            for test_set in self._cell_test_sets[(model, calib, method)]:
                baseline = (model, calib, AUTO_BASELINE_METHOD)
                records.append({
                    "model": model, "calibration": calib, "method": method, "test_set": test_set,
                    "quantize": f"{RESULTS}/quantized/{model}/{calib}/{method}/quantize.json",
                    "candidates": f"{self.int8_eval_dir(model, calib, method)}/candidates/{test_set}.npz",
                    "fp32": f"{self.fp32_eval_dir(model, test_set)}/predictions.npz",
                    "baseline": (f"{self.int8_eval_dir(*baseline, test_set)}/predictions.npz"
                                 if baseline in self._cell_test_sets and test_set in self._cell_test_sets[baseline]
                                 else None),
                })
        return records

    def auto_oracle_csv(self) -> list[str]:
        """auto_vs_oracle.csv where the study has auto cells (an input of the report: its page section)."""
        return [AUTO_ORACLE_CSV] if self.auto_cells() else []

    def auto_oracle_files(self) -> list[str]:
        return [path for record in self.auto_oracle_records()
                for path in (record["quantize"], record["candidates"], record["fp32"], record["baseline"]) if path]

    # the side environment (synthcal/sideenv.py): POT methods and the Datumaro fractal backend
    def _check_side_env_entries(self) -> None:
        """Every ``engine: pot`` method and every ``backend: datumaro`` set, selected or not, before any job."""
        from synthcal.calibration.datumaro_fractal import DatumaroError, check_datumaro_spec
        from synthcal.quantization.pot import PotError, check_pot_method

        try:
            for name in self.methods_of_engine("pot"):
                check_pot_method(name, self.config["methods"][name])
            for name in self.datumaro_sets():  # every entry; its files only where selected
                check_datumaro_spec(name, self.config["calibration"][name], files=name in self.calibrations)
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


GRID_KEYS = {"models": "models", "calibration": "calibration", "methods": "methods"}


def study_grids(config: dict) -> list[dict]:
    """``study`` as a list of grids, each with ``models``, ``calibration``, ``methods`` and ``test_sets`` resolved:
    an omitted key selects every defined entry; an empty list is refused (it would select no cell), except
    ``test_sets: []``, which means no extra test set. A name listed twice is refused, naming the key."""
    selection = config.get("study")
    grids = selection if isinstance(selection, list) else [selection or {}]
    if not grids:
        raise ConfigError("study: [] selects no cell; omit `study` for every defined entry, or give one or more "
                          "grids ({models: [...], calibration: [...], methods: [...]})")
    defined_sets = (config.get("evaluation") or {}).get("sets") or {}
    resolved = []
    for index, grid in enumerate(grids):
        where = f"study[{index}]" if isinstance(selection, list) else "study"
        grid = grid or {}
        entry = {}
        for key, section in (*GRID_KEYS.items(), ("test_sets", "evaluation.sets")):
            defined = defined_sets if key == "test_sets" else (config.get(section) or {})
            chosen = grid.get(key)
            if chosen is None:
                entry[key] = list(defined)
                continue
            if not chosen and key != "test_sets":
                raise ConfigError(f"{where}.{key}: [] selects nothing, so the grid has no cell; omit {key} for every "
                                  f"entry defined under `{section}:`, or list the ones to use")
            repeated = sorted({name for name in chosen if chosen.count(name) > 1})
            if repeated:
                raise ConfigError(f"{where}.{key} lists {', '.join(map(repr, repeated))} more than once; list each "
                                  "name once")
            for name in chosen:
                if name not in defined:
                    raise ConfigError(f"{where}.{key} names {name!r}, which is not defined under `{section}:` "
                                      f"(defined: {sorted(defined)})")
            entry[key] = list(chosen)
        resolved.append(entry)
    return resolved


def _union(lists) -> list[str]:
    return list(dict.fromkeys(name for names in lists for name in names))


def _ancient(path: str):
    """An input whose mtime Snakemake ignores (its content is checked otherwise)."""
    from snakemake.io import ancient

    return ancient(path)


def _pinned_paths(entry) -> set[str]:
    """Every ``path`` of a ``{path, sha256}`` mapping anywhere in a config entry."""
    if isinstance(entry, dict):
        found = {str(entry["path"])} if entry.get("path") and entry.get("sha256") else set()
        for value in entry.values():
            found |= _pinned_paths(value)
        return found
    if isinstance(entry, list):
        return set().union(*(_pinned_paths(value) for value in entry)) if entry else set()
    return set()


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
    from synthcal.cluster.cores import CoreLockError, claim_cores

    log_path = snakemake.log[0] if snakemake.log else None
    threads = int(getattr(snakemake, "threads", 1) or 1)
    try:
        claim_cores(threads)  # before OpenVINO or torch start their thread pools
    except CoreLockError as error:
        sys.exit(f"synthcal: {error}")
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
