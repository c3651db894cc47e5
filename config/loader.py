"""Builds the ``AppConfig`` from CDK context: defaults from ``cdk.json``, then a YAML/JSON file
(``-c config=path``), then single ``-c dotted.key=value`` overrides, in that order."""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from config.model import AppConfig, _KeyedError

DEFAULTS_KEY = "config_defaults"
FILE_KEY = "config"


class ConfigError(Exception):
    """A configuration problem, already phrased as the one line the user sees."""


def load_config(context: Mapping[str, Any]) -> AppConfig:
    """Merge the three layers and validate; raise ``ConfigError`` with a one-line message."""
    data = copy.deepcopy(context.get(DEFAULTS_KEY) or {})
    if not isinstance(data, dict):
        raise ConfigError(f"config error: context key {DEFAULTS_KEY} in cdk.json must be an object")
    file_name = context.get(FILE_KEY)
    if file_name:
        _deep_merge(data, _read_file(str(file_name)))
    top_level = set(AppConfig.model_fields)
    for key, raw in context.items():
        head = key.split(".", 1)[0].split("[", 1)[0]
        if key in (DEFAULTS_KEY, FILE_KEY):
            continue
        if head not in top_level:
            _refuse_unknown_section(key, head, top_level)
            continue
        _set_path(data, key, _parse_scalar(raw))
    return validate(data)


def _refuse_unknown_section(key: str, head: str, sections: set[str]) -> None:
    """``-c hyperpd.cluster_name=x`` must not synthesize silently. A dotted (or indexed) key is meant for the
    config; CDK's own context keys (``@aws-cdk/...``, ``aws:cdk:...``, ``availability-zones:...``) carry a
    ``:`` or start with ``@`` and pass through untouched."""
    if key.startswith("@") or ":" in key or not ("." in key or "[" in key):
        return
    close = difflib.get_close_matches(head, sorted(sections), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else f"; sections are {', '.join(sorted(sections))}"
    raise ConfigError(f"config error: {key}: {head!r} is not a config section{hint}")


def validate(data: dict) -> AppConfig:
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, data)) from None


def _read_file(name: str) -> dict:
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"config error: config = {name!r}: file not found")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config error: config = {name!r}: not valid YAML/JSON{where}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config error: config = {name!r}: the file must hold a mapping of config keys")
    return loaded


def _parse_scalar(raw: Any) -> Any:
    """``-c`` values arrive as strings. Lists and mappings are read as YAML flow syntax; scalars stay
    strings for pydantic to coerce per field (YAML would turn version ``1.20`` into ``1.2``)."""
    if not isinstance(raw, str) or not raw.strip().startswith(("[", "{")):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _deep_merge(base: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _set_path(data: dict, dotted: str, value: Any) -> None:
    """Set ``a.b[0].c`` in nested dicts/lists; missing intermediate mappings are created."""
    node: Any = data
    parts = _split(dotted)
    for part, nxt in zip(parts, parts[1:], strict=False):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"config error: {dotted}: index [{part}] does not exist")
            node = node[part]
        else:
            if not isinstance(node.get(part), (dict, list)):
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"config error: {dotted}: index [{last}] does not exist")
    node[last] = value


def _split(dotted: str) -> list:
    parts: list = []
    for piece in dotted.split("."):
        name, *indexes = piece.split("[")
        if name:
            parts.append(name)
        parts.extend(int(i.rstrip("]")) for i in indexes)
    return parts


def _key(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _lookup(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _one_line(exc: ValidationError, data: dict) -> str:
    first = exc.errors()[0]  # later errors are often echoes of the first (e.g. a list left empty)
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, _KeyedError):
        key, value, message = cause.key, cause.value, cause.message
    else:
        loc = tuple(p for p in first["loc"])
        key = _key(loc) or "<root>"
        value = _lookup(data, loc)
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "is required"
    shown = json.dumps(value) if value is not None else "(not set)"
    return f"config error: {key} = {shown}: {message}"
