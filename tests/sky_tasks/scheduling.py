"""Which nodes kube-scheduler's filter plugins leave for a pod, the part of scheduling a dry run
stops short of.

Implements the filters that decide placement here, as kube-scheduler documents them:
NodeUnschedulable (``spec.unschedulable``), NodeAffinity (``nodeSelector`` ANDed with the
required node-affinity terms, which are ORed with each other, their expressions ANDed),
TaintToleration (NoSchedule/NoExecute taints need a matching toleration) and NodeResourcesFit
(the sum of the containers' requests, plus what pods already bound to the node request, within
``status.allocatable``). Preferred terms and pod (anti-)affinity only rank or co-locate nodes, so
they are left out; a node not Ready is left out as the node lifecycle controller taints it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity


def _expression_matches(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator in ("Gt", "Lt"):
        if key not in labels:
            return False
        number, bound = int(labels[key]), int(values[0])
        return number > bound if operator == "Gt" else number < bound
    raise ValueError(f"unknown node selector operator {operator!r}")


def _affinity_matches(pod: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (pod.get("nodeSelector") or {}).items()):
        return False
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    return any(
        all(_expression_matches(e, labels) for e in term.get("matchExpressions") or [])
        for term in required["nodeSelectorTerms"]
    )


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") not in (None, "", taint["effect"]):
            continue
        if toleration.get("operator") == "Exists":
            if toleration.get("key") in (None, "", taint["key"]):
                return True
        elif toleration.get("key") == taint["key"] and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def _requests(resources: list[dict[str, Any]]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for container in resources:
        for name, quantity in (container.get("requests") or {}).items():
            total[name] = total.get(name, Decimal(0)) + parse_quantity(quantity)
    return total


def why_not(pod: dict[str, Any], node: dict[str, Any], bound_pods: list[dict[str, Any]] = ()) -> str | None:
    """The first filter that rejects ``node`` for ``pod`` (the dry run's compact pod), or None."""
    labels = node["metadata"].get("labels") or {}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions") or [])
    if not ready or node["spec"].get("unschedulable"):
        return "node not ready or cordoned"
    if not _affinity_matches(pod, labels):
        return "node selector / required node affinity"
    for taint in node["spec"].get("taints") or []:
        if taint["effect"] in ("NoSchedule", "NoExecute") and not _tolerated(taint, pod.get("tolerations") or []):
            return f"untolerated taint {taint['key']}={taint.get('value', '')}"
    used = _requests([c["resources"] for p in bound_pods for c in p["spec"]["containers"]])
    allocatable = node["status"].get("allocatable") or {}
    for name, wanted in _requests(pod["resources"]).items():
        free = parse_quantity(allocatable.get(name, "0")) - used.get(name, Decimal(0))
        if wanted > free:
            return f"insufficient {name}: wants {wanted}, {free} free"
    return None


def feasible_nodes(pod: dict[str, Any], nodes: list[dict[str, Any]]) -> list[str]:
    return [n["metadata"]["name"] for n in nodes if why_not(pod, n) is None]
