"""Label/field selector matching and JSON merge patch, as the API server applies them.

Kept apart from the HTTP plumbing so the double's tests can pin each rule on its own. An
unparseable selector raises ``ValueError``; the server turns that into the 400 BadRequest a
real API server answers with, so a caller's malformed selector fails loudly here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# One requirement of a label selector: `k in (a,b)`, `k notin (a)`, `k!=v`, `k==v`, `k=v`, `!k`, `k`.
_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>!=|==|=)\s*(?P<value>[-A-Za-z0-9_.]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")


def _split_top_level(selector: str) -> list[str]:
    """Split on commas outside parentheses (`a in (x,y),b` is two requirements)."""
    parts, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def label_matcher(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """Compile a labelSelector into a predicate over a label dict."""
    if not selector:
        return lambda labels: True
    checks: list[Callable[[dict[str, str]], bool]] = []
    for requirement in _split_top_level(selector):
        if m := _SET_RE.match(requirement):
            key, values = m["key"], {v.strip() for v in m["values"].split(",") if v.strip()}
            if m["op"] == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := _CMP_RE.match(requirement):
            key, value = m["key"], m["value"]
            if m["op"] == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: k in labels and labels[k] == v)
        elif m := _EXISTS_RE.match(requirement):
            key, negated = m["key"], bool(m["neg"])
            checks.append(lambda labels, k=key, n=negated: (k in labels) != n)
        else:
            raise ValueError(f"unable to parse requirement: {requirement.strip()!r}")
    return lambda labels: all(check(labels) for check in checks)


# Field selectors the real API server supports for the kinds the double serves.
SUPPORTED_FIELDS = {
    "nodes": {"metadata.name", "spec.unschedulable"},
    "pods": {"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"},
    "namespaces": {"metadata.name", "status.phase"},
}


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return "false" if path == "spec.unschedulable" else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_matcher(kind: str, selector: str | None) -> Callable[[dict[str, Any]], bool]:
    """Compile a fieldSelector (`=`, `==`, `!=` only, as the real server) for one kind."""
    if not selector:
        return lambda obj: True
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for requirement in _split_top_level(selector):
        m = re.match(r"^\s*([A-Za-z.]+)\s*(!=|==|=)\s*(.*?)\s*$", requirement)
        if not m:
            raise ValueError(f"invalid field selector: {requirement.strip()!r}")
        field, op, value = m.groups()
        if field not in SUPPORTED_FIELDS[kind]:
            raise ValueError(f"field label not supported: {field}")
        if op == "!=":
            checks.append(lambda obj, f=field, v=value: _field_value(obj, f) != v)
        else:
            checks.append(lambda obj, f=field, v=value: _field_value(obj, f) == v)
    return lambda obj: all(check(obj) for check in checks)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, ``null`` deletes, anything else replaces.

    The API server applies strategic merge patches the same way for maps (labels, annotations,
    capacity); only lists with merge keys (e.g. ``status.conditions``) differ, and the double
    replaces those wholesale. The code under test only patches ``metadata.labels``.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
