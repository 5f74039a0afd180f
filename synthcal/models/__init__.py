"""Model kinds: every ``models.<name>`` entry ends as the same FP32 OpenVINO IR (raw RGB pixels in).

One module per kind (``zoo``, ``pytorch``, ``onnx_model``, ``openvino_ir``), each with the same functions:

- ``CONFIG_KEYS``; ``NETWORK_SUFFIX`` (``pt``/``onnx``: fetched to ``results/weights/<name>.<suffix>``;
  ``None``: read in place); ``HAS_TORCH`` (a PyTorch network exists: data-free inversion works);
- ``resolve(name, entry) -> ModelSpec`` — parse-time checks (input size, output count, files);
- ``local_files(spec)`` — local files a job depends on; ``fetch(spec, cache_dir, out_path, seed)``;
- ``to_openvino(spec, network_files, workdir, options)`` — the bare network as an ``ov.Model``;
- ``reference_logits(spec, network_files, images, options)`` — a second implementation for the parity gate
  (``None`` where there is none); ``torch_network(spec, network_file)`` where ``HAS_TORCH``;
- optionally ``openvino_candidates(spec, network_files, workdir, options)`` — several ways to the IR, tried in turn
  until one passes the parity gate, and ``second_opinions(...)`` — more runtimes, asked when the gate fails.

Adding a kind = adding one module and listing it in ``KINDS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from synthcal.models.preprocessing import InputSpec

KIND_MODULES = {"zoo": "synthcal.models.zoo", "torch": "synthcal.models.pytorch",
                "onnx": "synthcal.models.onnx_model", "openvino": "synthcal.models.openvino_ir"}
KINDS = tuple(KIND_MODULES)


# False in runs that execute no job (snakemake --unlock, --lint): entries are resolved without importing or calling
# user code (a torch model's factory), so their output count stays unknown (None)
USER_CODE = {"allowed": True}


def allow_user_code(allowed: bool) -> None:
    USER_CODE["allowed"] = allowed


class ModelConfigError(ValueError):
    """A ``models.<name>`` entry that cannot work; the message names the key."""


@dataclass
class ModelSpec:
    """A resolved ``models.<name>`` entry."""

    name: str
    kind: str
    entry: dict
    input: InputSpec
    num_outputs: int | None = None  # None: known only once a downloaded file is there
    details: dict = field(default_factory=dict)
    no_torch_reason: str | None = None  # set by a kind that has a PyTorch network for some files but not this one
    # a costlier check of the same, run once and only where a data-free set asks (an ONNX file's fixed batch)
    torch_check: Callable[[], str | None] | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"models.{self.name}"

    @property
    def module(self):
        return kind_module(self.kind)

    @property
    def torch_problem(self) -> str | None:
        """Why there is no PyTorch network with BatchNorm statistics to invert (data-free sets), or None."""
        if not self.module.HAS_TORCH:
            return f"is kind {self.kind}, which has no PyTorch network; give that model as kind torch or onnx"
        if self.no_torch_reason is None and self.torch_check is not None:
            self.no_torch_reason, self.torch_check = self.torch_check(), None
        return self.no_torch_reason

    @property
    def has_torch(self) -> bool:
        return self.torch_problem is None

    @property
    def network_suffix(self) -> str | None:
        return self.module.NETWORK_SUFFIX

    def record(self) -> dict:
        """Provenance: kind, what the entry said and the preprocessing the IR bakes in."""
        return {"name": self.name, "kind": self.kind, "config": self.entry, "input": self.input.record(),
                "num_outputs": self.num_outputs, **self.details}


def kind_module(kind: str):
    if kind not in KIND_MODULES:
        raise ModelConfigError(f"model kind {kind!r} is not one of {KINDS}")
    return importlib.import_module(KIND_MODULES[kind])


def model_spec(name: str, entry: dict | None) -> ModelSpec:
    """Resolve ``models.<name>``: the kind defaults to ``zoo`` when ``name`` is a zoo architecture."""
    from synthcal.models.cifar_zoo import MODEL_NAMES

    entry = dict(entry or {})
    kind = entry.get("kind") or ("zoo" if name in MODEL_NAMES or entry.get("architecture") else None)
    if kind is None:
        raise ModelConfigError(f"models.{name}.kind is not set and {name!r} is not a zoo architecture; set kind to "
                               f"one of {KINDS} (zoo names: {', '.join(MODEL_NAMES)})")
    module = kind_module(kind)
    unknown = sorted(set(entry) - set(module.CONFIG_KEYS) - {"kind"})
    if unknown:
        raise ModelConfigError(f"models.{name}: key(s) {unknown} do not apply to kind {kind} "
                               f"(allowed: {sorted(module.CONFIG_KEYS)})")
    try:
        return module.resolve(name, entry)
    except ModelConfigError:
        raise
    except (ValueError, OSError, ImportError, AttributeError, TypeError, RuntimeError) as error:
        raise ModelConfigError(f"models.{name}: {error}") from error


def torch_classifier(spec: ModelSpec, network_file):
    """The PyTorch network behind the IR's raw-pixel input (``RawPixelClassifier``), in eval mode."""
    from synthcal.models.raw_pixels import RawPixelClassifier

    if not spec.has_torch:
        raise ModelConfigError(f"{spec.key} {spec.torch_problem}")
    return RawPixelClassifier(spec.module.torch_network(spec, network_file), spec.input).eval()
