"""Quantization engines, selected per method entry by ``engine:``.

- ``nncf`` (the default): :mod:`synthcal.quantization.nncf_engine`, NNCF in the main environment.
- ``pot``: :mod:`synthcal.quantization.pot`, OpenVINO's Post-training Optimization Tool from openvino-dev 2023.3,
  the 2022 study's tool; it runs only in the side environment (``make pot-env``, see :mod:`synthcal.sideenv`).

Both write the same files (``int8.xml``/``.bin`` and ``quantize.json``), so evaluation and the report read either.
:mod:`synthcal.quantization.ir` holds the IR checks both use; :mod:`synthcal.quantization.compare` tabulates
POT against NNCF on the same calibration sets.
"""

ENGINES = ("nncf", "pot")


def engine_of(method: dict) -> str:
    """The engine a method entry runs on (``nncf`` unless it says otherwise)."""
    return (method or {}).get("engine", "nncf")
