"""Shared test fixtures. ``../shared`` is read in place; tests that need it skip when it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synthcal.models.cifar_zoo import synthetic_state_dict  # noqa: F401 - tests import it from here

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYNTHCAL_SHARED", REPO.parent / "shared")).resolve()


def shared_path(*parts: str) -> Path:
    """Return a path under ../shared, or skip the calling test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared folder beside the checkout; set SYNTHCAL_SHARED to move it)")
    return path


@pytest.fixture
def reference_dir() -> Path:
    return shared_path("reference")


class TinyClassifier(torch.nn.Module):
    """A small BatchNorm CNN with the zoo's ``forward_features`` interface; ``widths`` sets its conv layers."""

    def __init__(self, widths: tuple[int, ...] = (8,)):
        super().__init__()
        layers, channels = [], 3
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            layers += [torch.nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                       torch.nn.BatchNorm2d(width), torch.nn.ReLU()]
            channels = width
        self.body = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.fc = torch.nn.Linear(channels, 10)

    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def tiny_classifier_model(widths: tuple[int, ...] = (8, 16)):
    """A TinyClassifier as an OpenVINO model (raw NCHW float input), its BatchNorm statistics moved away from
    identity so that INT8 differs from FP32."""
    import openvino as ov

    torch.manual_seed(0)
    network = TinyClassifier(widths).eval()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return ov.convert_model(network, example_input=torch.zeros(1, 3, 32, 32), input=[-1, 3, 32, 32])


def quantizer_ranges(model) -> list:
    """The FakeQuantize input/output limits of an IR (path or ``ov.Model``), in graph order."""
    import openvino as ov

    if not isinstance(model, ov.Model):
        model = ov.Core().read_model(str(model))
    return [op.input_value(index).get_node().get_data() for op in model.get_ordered_ops()
            if op.get_type_name() == "FakeQuantize" for index in range(1, 5)]


def run_snakemake(workdir: Path, *configs: Path, args: tuple[str, ...] = (), timeout: int = 1500,
                  cores: int = 2) -> subprocess.CompletedProcess:
    """The real ``snakemake`` on the project's Snakefile in ``workdir``, with config.yaml then ``configs``."""
    # small slices: light jobs take one core each, so two run side by side
    one_thread = [f"{rule}=1" for rule in ("quantize", "evaluate_int8", "evaluate_fp32", "calibration_quality",
                                           "calibration_set")]
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
               "--cores", str(cores), *args, "--set-threads", *one_thread,  # (targets in args: before the list)
               "--configfile", str(REPO / "config.yaml"), *map(str, configs)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def require_side_env() -> None:
    """Skip when the POT/Datumaro side environment (make pot-env) is missing; fail instead where
    SYNTHCAL_REQUIRE_SIDE_ENV=1 (.ci/run builds it, so there it must run)."""
    from synthcal.sideenv import missing_reason, side_env_ready

    if not side_env_ready():
        if os.environ.get("SYNTHCAL_REQUIRE_SIDE_ENV") == "1":
            pytest.fail(missing_reason())
        pytest.skip(missing_reason())
