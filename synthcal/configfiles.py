"""Config files read strictly, before Snakemake's config is used: what PyYAML and Snakemake accept silently is refused.

* a key given twice in one mapping (the last one would win): both lines named;
* more than ``MAX_ALIASES`` aliases (``*name``), counted while the file is composed, before any value is built:
  an alias bomb (aliases of aliases) fails at once instead of exhausting memory when the config is walked;
* ``__use_yte__`` (Snakemake's YTE templating runs Python from the file);
* an empty file, one that is not a mapping, a tab in an indent or any other YAML error: one line with the file and
  the line.

Snakemake itself loads ``--configfile`` files while reading its command line, before the Snakefile runs; the
Snakefile calls ``check_config_files`` first thing, so a bad file stops the run before any rule, check or job.
"""

from __future__ import annotations

import json
import os

import yaml

MAX_ALIASES = 32  # aliases per file; the shipped configs use none


class ConfigFileError(ValueError):
    """A config file that cannot be read unambiguously; the message names the file (and line and key)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases while composing and refuses duplicate keys while constructing."""

    def __init__(self, stream, filename: str):
        super().__init__(stream)
        self.filename = filename
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise ConfigFileError(f"{self.filename} line {mark.line + 1}: more than {MAX_ALIASES} YAML aliases "
                                      "(*name); write the values out (an alias bomb would exhaust memory)")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                here = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                try:
                    first = seen.setdefault(key, here)
                except TypeError:  # an unhashable key: SafeLoader words that itself
                    continue
                if first != here:
                    where = (f"line {here[0]}, columns {first[1]} and {here[1]}" if first[0] == here[0]
                             else f"lines {first[0]} and {here[0]}")  # one line: a {…} mapping
                    raise ConfigFileError(f"{self.filename}: key {key!r} is given twice ({where}); keep one")
        return super().construct_mapping(node, deep=deep)


def _json_pairs(filename: str):
    def pairs(items):
        keys = [key for key, _ in items]
        for key in keys:
            if keys.count(key) > 1:
                raise ConfigFileError(f"{filename}: key {key!r} is given twice in one object; keep one")
        return dict(items)
    return pairs


def load_config_file(path: str | os.PathLike) -> dict:
    """The file as a dict (JSON or YAML, as Snakemake reads it), or ``ConfigFileError`` in one line."""
    filename = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"{filename}: cannot be read as UTF-8 text ({error})") from None
    if not text.strip():
        raise ConfigFileError(f"{filename} is empty; a config file is a YAML mapping (key: value lines) or left out")
    try:
        config = json.loads(text, object_pairs_hook=_json_pairs(filename))
    except ValueError as error:
        if isinstance(error, ConfigFileError):
            raise
        loader = _StrictLoader(text, filename)
        try:
            config = loader.get_single_data()
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            lines = text.splitlines()
            line = lines[mark.line] if mark and mark.line < len(lines) else ""
            if "\t" in line[:len(line) - len(line.lstrip(" \t")) + 1]:
                problem = "a tab in the indentation; YAML indents with spaces only"
            raise ConfigFileError(f"{filename}{where}: not valid YAML ({problem})") from None
        finally:
            loader.dispose()
    if config is None:
        raise ConfigFileError(f"{filename} holds no settings (only comments?); a config file is a YAML mapping")
    if not isinstance(config, dict):
        raise ConfigFileError(f"{filename}: the top level is a {type(config).__name__}, not a mapping of keys "
                              "(study:, models:, ...)")
    if "__use_yte__" in config:
        raise ConfigFileError(f"{filename}: key __use_yte__: YTE templates run Python from the config file; synthcal "
                              "refuses them: write the values out (code belongs in a model's factory:)")
    return config


def check_config_files(paths) -> None:
    """Read every config file of the run strictly (``load_config_file``); the first problem is raised."""
    for path in paths:
        load_config_file(path)
