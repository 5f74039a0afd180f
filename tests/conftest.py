"""Shared test fixtures. ``../shared`` is read in place; tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
