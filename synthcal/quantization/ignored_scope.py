"""A method's ``ignored_scope`` checked against the FP32 IR's layers before anything of the cell is touched.

NNCF checks the scope itself (``validate: true``, its default), but only inside the quantize job, after Snakemake
has deleted the cell's previous outputs, and in its own words. Read from the IR's XML (no OpenVINO import), so it
also runs while Snakemake builds the DAG. Names must be layers; each pattern must find one (``re.search``, looser
than NNCF's own match, so nothing NNCF accepts is refused). Types are left to NNCF.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree


class IgnoredScopeError(ValueError):
    """An ``ignored_scope`` entry that names no layer of the model."""


def ir_layer_names(xml_path: str | os.PathLike) -> list[str]:
    """The ``name`` of every layer of an OpenVINO IR, in file order."""
    try:
        return [element.get("name", "") for _, element in ElementTree.iterparse(str(xml_path))
                if element.tag == "layer"]
    except ElementTree.ParseError as error:
        raise IgnoredScopeError(f"{xml_path} is not a readable OpenVINO IR ({error})") from None


def check_ignored_scope(method_name: str, scope: dict | None, layer_names: list[str], source: str) -> None:
    """Raise naming the key when a name is not a layer or a pattern matches none (unless ``validate: false``)."""
    if not scope or scope.get("validate", True) is False:
        return
    known = set(layer_names)
    key = f"methods.{method_name}.ignored_scope"
    hint = (f"; its layers include {', '.join(layer_names[1:4])} … ({len(layer_names)} in all), or set "
            f"{key}.validate: false")
    for name in scope.get("names") or []:
        if name not in known:
            raise IgnoredScopeError(f"{key}.names: {name!r} is not a layer of {source}{hint}")
    for pattern in scope.get("patterns") or []:
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise IgnoredScopeError(f"{key}.patterns: {pattern!r} is not a regular expression ({error})") from None
        if not any(regex.search(name) for name in layer_names):
            raise IgnoredScopeError(f"{key}.patterns: {pattern!r} matches no layer of {source}{hint}")
