"""The side environment: the 2022 toolchain (POT from openvino-dev 2023.3, Datumaro 1.11.1) with its own pins.

It never shares a Python with the main environment (their numpy and OpenVINO versions clash). ``make pot-env``
builds it as a venv at ``.venv-pot`` from ``requirements-pot.lock`` (``envs/pot.yaml`` is the same for conda);
the workflow builds it on demand (rule ``pot_env``) only when the config asks for a POT method or the Datumaro
fractal backend. Side-environment jobs run ``python -m synthcal.<module>`` with this checkout on ``PYTHONPATH``;
those modules import only numpy, OpenVINO 2023.3, POT, Datumaro and the light synthcal modules (``io``,
``inference``, ``plots``, ``quantization.ir``).

``SYNTHCAL_SIDE_ENV`` moves the environment (a venv or conda prefix with ``bin/python``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = ".installed"
LOCK_FILE = REPO / "requirements-pot.lock"


class SideEnvError(RuntimeError):
    """The side environment is missing or a job in it failed."""


def side_env_dir() -> Path:
    return Path(os.environ.get("SYNTHCAL_SIDE_ENV", REPO / ".venv-pot")).expanduser().absolute()


def side_python() -> Path:
    return side_env_dir() / "bin" / "python"


def side_env_marker() -> Path:
    """Written by ``make pot-env`` once the pinned packages are installed."""
    return side_env_dir() / MARKER


def side_env_ready() -> bool:
    return side_python().is_file() and side_env_marker().is_file()


def missing_reason() -> str:
    return (f"the side environment ({side_env_dir()}) is not installed: run `make pot-env` "
            "(POT from openvino-dev 2023.3 and Datumaro 1.11.1 with their own pins)")


def side_env_variables() -> dict[str, str]:
    """Environment for a side-environment process: this checkout importable, nothing from the main venv."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO)
    return env


def run_module(module: str, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` in the side environment; raises with its output when it fails."""
    if not side_env_ready():
        raise SideEnvError(missing_reason())
    command = [str(side_python()), "-m", module, *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=side_env_variables())
    if run.returncode != 0:
        raise SideEnvError(f"{' '.join(command)} failed ({run.returncode}):\n"
                           f"{run.stdout[-3000:]}\n{run.stderr[-6000:]}")
    return run


def run_json(module: str, *args: str, timeout: float | None = None):
    """Run a side-environment module that prints one JSON document as its last stdout line."""
    lines = run_module(module, *args, timeout=timeout).stdout.strip().splitlines()
    return json.loads(lines[-1])
