"""The oracle of method ``auto``: every candidate of an auto cell on a real test set.

Runs after the cell's quantize job has fixed its choice in ``quantize.json`` (rule ``evaluate_auto_candidates``);
the report compares the pick with the best candidate here (synthcal/report/auto_oracle.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from synthcal.evaluation.evaluate import evaluate_ir
from synthcal.io import ImageSet, read_json, save_npz_deterministic


def evaluate_candidates(candidates_dir: str | os.PathLike, candidate_ids: list[str], test_set: ImageSet,
                        predictions_path: str | os.PathLike, *, precision_hint: str = "f32",
                        batch_size: int = 100) -> np.ndarray:
    """Top-1 predictions of each candidate IR (``candidates_dir/<id>/int8.xml``), one row per candidate."""
    rows = []
    for candidate in candidate_ids:
        xml = Path(candidates_dir) / candidate / "int8.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"auto candidate {candidate!r}: {xml} is missing")
        _, logits = evaluate_ir(xml, test_set, precision_hint=precision_hint, batch_size=batch_size,
                                show_progress=False)
        rows.append(logits.argmax(1))
    predictions = np.stack(rows).astype(np.int64)
    save_npz_deterministic(predictions_path, candidates=np.array(candidate_ids), predictions=predictions,
                           labels=np.asarray(test_set.labels, dtype=np.int64))
    return predictions


def evaluate_candidates_from_files(inputs, outputs, options: dict) -> np.ndarray:
    """Workflow entry: the candidates listed in the cell's quantize.json, on the rule's test set."""
    from synthcal.io import load_image_set

    ids = [record["id"] for record in read_json(inputs.quantize_info)["candidates"]]
    return evaluate_candidates(inputs.candidates, ids, load_image_set(inputs.test), outputs.predictions,
                               precision_hint=options.get("precision_hint", "f32"),
                               batch_size=int(options.get("batch_size", 100)))
