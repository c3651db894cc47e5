"""A loopback Kubernetes API server double for the post-deploy steps and SkyPilot.

Why a double instead of mocks: the code under test talks to the API through the real
``kubernetes`` client and SkyPilot talks through its own client code; only an HTTP server that
answers like the API server exercises serialisation, selectors, patch content types, optimistic
concurrency and error shapes the way a real cluster does.

What it serves (everything else is logged in ``unknown_requests`` and answered with a 404
``Status``, so a new call made by SkyPilot shows up instead of silently passing):

- ``/version``, ``/api``, ``/apis`` (discovery; only the core group is served)
- nodes: list (labelSelector, fieldSelector), get, patch (merge and strategic merge), put
- namespaces: list, get, create
- pods: list namespaced and across namespaces (label/field selectors), get
- custom objects (e.g. Kueue LocalQueues and ClusterQueues): get, namespaced or cluster-scoped, for the
  kinds seeded with ``add_custom_object``; any other kind answers 404 as an API server without that CRD

Behaviour pinned by ``tests/k8s_double/test_*.py`` against the real client:

- one cluster-wide ``resourceVersion`` counter bumped by every write, as etcd revisions are;
- a patch or put carrying a stale ``metadata.resourceVersion`` gets 409 Conflict;
- 401 without the bearer token, 404/403/409/429/5xx as ``Status`` objects shaped like the
  real API server's (``kind: Status``, ``reason``, ``code``, ``details``);
- ``inject_fault`` answers the next N matching requests with an error; an injected 409 also
  bumps the target's resourceVersion, because a real conflict means someone else wrote.

Usage (the pytest fixtures in ``tests/k8s_double/fixtures.py`` do this for you)::

    with K8sDouble() as api:
        api.add_node(seed.hyperpod_node("ml.p5.48xlarge"))
        api.inject_fault("PATCH", r"/api/v1/nodes/", status=409, times=2)
        ...                      # point a kubeconfig at api.url with api.token
        api.writes()             # write requests that reached the server
"""

from __future__ import annotations

import copy
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.k8s_double.selectors import field_matcher, label_matcher, merge_patch

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PATCH_TYPES = frozenset({"application/merge-patch+json", "application/strategic-merge-patch+json"})

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """Raised inside a handler to answer with a ``Status`` object."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.code, self.message, self.name, self.kind, self.retry_after = code, message, name, kind, retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": _REASONS.get(self.code, "Unknown"),
            "code": self.code,
        }
        details = {k: v for k, v in (("name", self.name), ("kind", self.kind)) if v}
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        return body


@dataclass
class Request:
    """One request as the server saw it (``status`` is what it answered)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    status: int = 0


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    remaining: int | None  # None: forever
    retry_after: int | None
    message: str | None


@dataclass
class _Store:
    nodes: dict[str, dict] = field(default_factory=dict)
    namespaces: dict[str, dict] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict] = field(default_factory=dict)
    # (group, version, plural) -> {(namespace or "", name): object}
    custom: dict[tuple[str, str, str], dict[tuple[str, str], dict]] = field(default_factory=dict)


class K8sDouble:
    """The server plus its in-memory objects. Thread-safe; one lock guards state and the log."""

    def __init__(self, *, token: str | None = None, git_version: str = "v1.33.5-eks-3025e55", latency: float = 0.0):
        self.token = token or uuid.uuid4().hex
        self.latency = latency  # seconds added to every request, as a remote API server's round trip
        self.git_version = git_version
        self._lock = threading.RLock()
        self._revision = 1000
        self._store = _Store()
        self._faults: list[_Fault] = []
        self.requests: list[Request] = []
        self.unknown_requests: list[Request] = []
        self.before_request: Callable[[Request], None] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_namespace("default")
        self.add_namespace("kube-system")

    # ----- lifecycle -------------------------------------------------------------------------
    def start(self) -> K8sDouble:
        handler = type("Handler", (_Handler,), {"double": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="k8s-double", kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> K8sDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server, "K8sDouble not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ----- seeding and inspection (direct, bypass HTTP; writes still bump the revision) ------
    def _bump(self, obj: dict) -> None:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)

    def _new(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self._bump(obj)
        return obj

    def add_node(self, node: dict) -> dict:
        with self._lock:
            stored = self._store.nodes[node["metadata"]["name"]] = self._new(node)
            return copy.deepcopy(stored)

    def add_nodes(self, nodes: list[dict]) -> None:
        for node in nodes:
            self.add_node(node)

    def remove_node(self, name: str) -> None:
        with self._lock:
            del self._store.nodes[name]
            self._revision += 1

    def add_namespace(self, name: str) -> dict:
        ns = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        with self._lock:
            stored = self._store.namespaces[name] = self._new(ns)
            return copy.deepcopy(stored)

    def add_pod(self, pod: dict) -> dict:
        meta = pod["metadata"]
        with self._lock:
            if meta.get("namespace", "default") not in self._store.namespaces:
                self.add_namespace(meta["namespace"])
            stored = self._new(pod)
            stored["metadata"].setdefault("namespace", "default")
            self._store.pods[(stored["metadata"]["namespace"], meta["name"])] = stored
            return copy.deepcopy(stored)

    def add_custom_object(self, group: str, version: str, plural: str, obj: dict) -> dict:
        """Seed a custom resource (its CRD counts as installed from then on)."""
        meta = obj["metadata"]
        with self._lock:
            stored = self._new(obj)
            self._store.custom.setdefault((group, version, plural), {})[(meta.get("namespace", ""), meta["name"])] = (
                stored
            )
            return copy.deepcopy(stored)

    def node(self, name: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._store.nodes[name])

    def nodes(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(list(self._store.nodes.values()))

    def update_node(self, name: str, mutate: Callable[[dict], None]) -> dict:
        """Change a node as another actor would (kubelet, HyperPod, a user): bumps its version."""
        with self._lock:
            node = self._store.nodes[name]
            mutate(node)
            self._bump(node)
            return copy.deepcopy(node)

    @property
    def revision(self) -> int:
        with self._lock:
            return self._revision

    # ----- faults and the request log --------------------------------------------------------
    def inject_fault(
        self,
        method: str,
        path: str,
        *,
        status: int,
        times: int | None = 1,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and regex ``path`` with ``status``.

        ``times=None`` keeps failing (e.g. a permanent 403). An injected 409 on an object path
        also bumps that object's resourceVersion, as the concurrent writer it stands for would.
        """
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path), status, times, retry_after, message))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def writes(self, *, successful: bool = False) -> list[Request]:
        """Write requests received (only those answered 2xx when ``successful``)."""
        with self._lock:
            return [r for r in self.requests if r.method in WRITE_METHODS and (not successful or 200 <= r.status < 300)]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.unknown_requests.clear()

    def _take_fault(self, request: Request) -> _Fault | None:
        for fault in self._faults:
            if fault.method in (request.method, "*") and fault.path.search(request.path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    # ----- request handling ------------------------------------------------------------------
    def handle(self, request: Request, authorization: str | None) -> tuple[int, dict]:
        if self.latency:
            time.sleep(self.latency)
        if self.before_request:
            self.before_request(request)
        with self._lock:
            self.requests.append(request)
            try:
                if authorization != f"Bearer {self.token}":
                    raise ApiError(401, "Unauthorized")
                if fault := self._take_fault(request):
                    raise self._fault_error(fault, request)
                result = 200, self._route(request)
            except ApiError as err:
                result = err.code, err.status()
            request.status = result[0]
            return result

    def _fault_error(self, fault: _Fault, request: Request) -> ApiError:
        kind, name = _object_ref(request.path)
        if fault.status == 409 and kind == "nodes" and name in self._store.nodes:
            self._bump(self._store.nodes[name])
        messages = {
            403: f'{kind or "resource"} "{name}" is forbidden: User "hyperpod-test" cannot '
            f'{request.method.lower()} resource "{kind}" in API group "" at the cluster scope',
            409: f'Operation cannot be fulfilled on {kind} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            429: "Too many requests, please try again later.",
            500: "Internal error occurred: injected fault",
            503: "the server is currently unable to handle the request",
        }
        retry_after = fault.retry_after if fault.retry_after is not None else (1 if fault.status == 429 else None)
        return ApiError(
            fault.status,
            fault.message or messages.get(fault.status, "injected fault"),
            name=name,
            kind=kind,
            retry_after=retry_after,
        )

    def _route(self, request: Request) -> dict:
        for method, pattern, handler in _ROUTES:
            if m := pattern.fullmatch(request.path):
                if request.method != method:
                    continue
                return handler(self, request, **m.groupdict())
        if any(p.fullmatch(request.path) for _, p, _ in _ROUTES):
            raise ApiError(405, "the server does not allow this method on the requested resource")
        self.unknown_requests.append(request)
        raise ApiError(404, "the server could not find the requested resource")

    # discovery
    def _version(self, request: Request) -> dict:
        major, minor = self.git_version.lstrip("v").split(".")[:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": self.git_version,
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2025-10-01T00:00:00Z",
            "goVersion": "go1.24.6",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _api(self, request: Request) -> dict:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}],
        }

    def _apis(self, request: Request) -> dict:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}

    # listing
    def _list(self, kind: str, objects: list[dict], request: Request) -> dict:
        if request.query.get("watch") in ("true", "1"):
            self.unknown_requests.append(request)
            raise ApiError(405, "watch is not supported by the test double")
        try:
            by_label = label_matcher(request.query.get("labelSelector"))
            by_field = field_matcher(kind, request.query.get("fieldSelector"))
        except ValueError as err:
            raise ApiError(400, str(err)) from None
        items = [copy.deepcopy(o) for o in objects if by_label(o["metadata"].get("labels") or {}) and by_field(o)]
        singular = {"nodes": "Node", "pods": "Pod", "namespaces": "Namespace"}[kind]
        for item in items:  # list items omit kind/apiVersion in real responses too
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {
            "kind": f"{singular}List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    def _list_nodes(self, request: Request) -> dict:
        return self._list("nodes", list(self._store.nodes.values()), request)

    def _get_node(self, request: Request, name: str) -> dict:
        return copy.deepcopy(self._existing_node(name))

    def _existing_node(self, name: str) -> dict:
        if name not in self._store.nodes:
            raise ApiError(404, f'nodes "{name}" not found', name=name, kind="nodes")
        return self._store.nodes[name]

    def _check_version(self, current: dict, sent: dict, name: str) -> None:
        sent_version = (sent.get("metadata") or {}).get("resourceVersion")
        if sent_version is not None and sent_version != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on nodes "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                name=name,
                kind="nodes",
            )

    def _patch_node(self, request: Request, name: str) -> dict:
        if request.content_type not in PATCH_TYPES:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(sorted(PATCH_TYPES))}",
            )
        if not isinstance(request.body, dict):
            raise ApiError(400, "the request body is not a JSON object")
        node = self._existing_node(name)
        self._check_version(node, request.body, name)
        patched = merge_patch(node, request.body)
        self._commit_node(node, patched)
        return copy.deepcopy(self._store.nodes[name])

    def _put_node(self, request: Request, name: str) -> dict:
        if not isinstance(request.body, dict) or request.body.get("metadata", {}).get("name") != name:
            raise ApiError(
                400,
                f"the name of the object ({(request.body or {}).get('metadata', {}).get('name')}) "
                f"does not match the name on the URL ({name})",
            )
        node = self._existing_node(name)
        self._check_version(node, request.body, name)
        self._commit_node(node, copy.deepcopy(request.body))
        return copy.deepcopy(self._store.nodes[name])

    def _commit_node(self, old: dict, new: dict) -> None:
        for immutable in ("name", "uid", "creationTimestamp"):  # the server owns these
            new["metadata"][immutable] = old["metadata"][immutable]
        new["kind"], new["apiVersion"] = "Node", "v1"
        self._bump(new)
        self._store.nodes[old["metadata"]["name"]] = new

    def _list_namespaces(self, request: Request) -> dict:
        return self._list("namespaces", list(self._store.namespaces.values()), request)

    def _get_namespace(self, request: Request, namespace: str) -> dict:
        if namespace not in self._store.namespaces:
            raise ApiError(404, f'namespaces "{namespace}" not found', name=namespace, kind="namespaces")
        return copy.deepcopy(self._store.namespaces[namespace])

    def _create_namespace(self, request: Request) -> dict:
        name = ((request.body or {}).get("metadata") or {}).get("name")
        if not name:
            raise ApiError(422, 'Namespace "" is invalid: metadata.name: Required value', kind="Namespace")
        if name in self._store.namespaces:
            raise ApiError(409, f'namespaces "{name}" already exists', name=name, kind="namespaces")
        return self.add_namespace(name)

    def _list_pods(self, request: Request, namespace: str | None = None) -> dict:
        pods = [p for (ns, _), p in self._store.pods.items() if namespace in (None, ns)]
        return self._list("pods", pods, request)

    def _get_pod(self, request: Request, namespace: str, name: str) -> dict:
        if (namespace, name) not in self._store.pods:
            raise ApiError(404, f'pods "{name}" not found', name=name, kind="pods")
        return copy.deepcopy(self._store.pods[(namespace, name)])


def _get_custom(
    self: K8sDouble, request: Request, group: str, version: str, plural: str, name: str, namespace: str = ""
) -> dict:
    kind = self._store.custom.get((group, version, plural))
    if kind is None:  # no such CRD: the real API server's answer for an unknown resource path
        self.unknown_requests.append(request)
        raise ApiError(404, "the server could not find the requested resource")
    if (namespace, name) not in kind:
        raise ApiError(404, f'{plural}.{group} "{name}" not found', name=name, kind=plural)
    return copy.deepcopy(kind[(namespace, name)])


def _object_ref(path: str) -> tuple[str | None, str | None]:
    """(plural kind, name) of an object path, e.g. ``/api/v1/nodes/n1`` -> (nodes, n1)."""
    m = re.search(r"/api/v1/(?:namespaces/[^/]+/)?(\w+)(?:/([^/]+))?", path)
    return (m.group(1), m.group(2)) if m else (None, None)


_NAME = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
_ROUTES: list[tuple[str, re.Pattern[str], Callable[..., dict]]] = [
    ("GET", re.compile(r"/version/?"), K8sDouble._version),
    ("GET", re.compile(r"/api/?"), K8sDouble._api),
    ("GET", re.compile(r"/apis/?"), K8sDouble._apis),
    ("GET", re.compile(r"/api/v1/nodes"), K8sDouble._list_nodes),
    ("GET", re.compile(rf"/api/v1/nodes/(?P<name>{_NAME})"), K8sDouble._get_node),
    ("PATCH", re.compile(rf"/api/v1/nodes/(?P<name>{_NAME})"), K8sDouble._patch_node),
    ("PUT", re.compile(rf"/api/v1/nodes/(?P<name>{_NAME})"), K8sDouble._put_node),
    ("GET", re.compile(r"/api/v1/namespaces"), K8sDouble._list_namespaces),
    ("POST", re.compile(r"/api/v1/namespaces"), K8sDouble._create_namespace),
    ("GET", re.compile(rf"/api/v1/namespaces/(?P<namespace>{_NAME})"), K8sDouble._get_namespace),
    ("GET", re.compile(r"/api/v1/pods"), K8sDouble._list_pods),
    ("GET", re.compile(rf"/api/v1/namespaces/(?P<namespace>{_NAME})/pods"), K8sDouble._list_pods),
    ("GET", re.compile(rf"/api/v1/namespaces/(?P<namespace>{_NAME})/pods/(?P<name>{_NAME})"), K8sDouble._get_pod),
    (
        "GET",
        re.compile(
            rf"/apis/(?P<group>{_NAME})/(?P<version>v[0-9a-z]+)/namespaces/(?P<namespace>{_NAME})"
            rf"/(?P<plural>[a-z]+)/(?P<name>{_NAME})"
        ),
        _get_custom,
    ),
    (
        "GET",
        re.compile(rf"/apis/(?P<group>{_NAME})/(?P<version>v[0-9a-z]+)/(?P<plural>[a-z]+)/(?P<name>{_NAME})"),
        _get_custom,
    ),
]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client dropping a kept-alive connection is normal; anything else is printed."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, so a client pool reuses connections as it would against EKS."""

    protocol_version = "HTTP/1.1"
    double: K8sDouble

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes; without this, Nagle + delayed ACK add ~40 ms each
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode(errors="replace")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        request = Request(self.command, parts.path, query, content_type, body)
        status, payload = self.double.handle(request, self.headers.get("Authorization"))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        retry_after = (payload.get("details") or {}).get("retryAfterSeconds")
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass
