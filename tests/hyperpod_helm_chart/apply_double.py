"""A small HTTPS Kubernetes API double that does server-side apply with field managers, for helm 4.

Why: helm 4 applies server-side, and an upgrade then fails when another field manager (a person's
``kubectl edit``, an operator) owns a field the chart sets, unless the apply forces conflicts. Only a
server that keeps ``managedFields`` per manager and answers 409 the way the API server does shows what
the installer's flags do. Faithful to the API server where helm can see it:

- ConfigMaps and Secrets in namespaces (helm keeps its releases in Secrets labelled
  ``owner=helm,name=<release>``); create (POST), get, list with label selectors, replace (PUT),
  JSON merge patch and server-side apply (PATCH ``application/apply-patch+yaml`` with
  ``fieldManager`` and ``force``), delete;
- field ownership per manager at leaf granularity (``.data.key``, ``.metadata.labels.key``, ...):
  an apply by manager M of a field another manager owns with a different value is a 409 ``Conflict``
  whose message and ``details.causes`` name the field and the owner, like kube-apiserver's
  ("Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.mode"); with
  ``force=true`` M takes the field; fields M applied before and omits now are removed unless another
  manager owns them; Update-style writes (PUT, merge PATCH) make their ``fieldManager`` own what they
  changed, as the API server records ``operation: Update``;
- namespaces: get, create and apply (``--create-namespace``), ``default`` and ``kube-system`` present;
- discovery for the core group (``/api``, ``/api/v1``, ``/apis``), ``/version``, and the OpenAPI v3
  documents helm validates manifests against before it sends them (ConfigMap, Secret, ObjectMeta).

Everything else is a 404 ``Status`` and is recorded in ``unknown`` so a test sees what it does not serve.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.k8s_double.selectors import label_matcher, merge_patch

from .support import make_tls_material

_KINDS = {"configmaps": "ConfigMap", "secrets": "Secret"}
_IDENTITY = ("apiVersion", "kind")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """Protocol buffers wire format: (field number, varint or bytes) in order."""
    out, pos = [], 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ValueError(f"wire type {wire} not used by Secret")
        out.append((number, value))
    return out


def _map(entries: list[bytes]) -> dict[str, bytes]:
    result = {}
    for entry in entries:
        kv = dict(_fields(entry))
        result[kv.get(1, b"").decode()] = kv.get(2, b"")
    return result


def decode_protobuf_secret(body: bytes) -> dict:
    """A core/v1 Secret in Kubernetes' protobuf envelope (``k8s\\0`` + runtime.Unknown) as the JSON object.

    Field numbers from k8s.io/api/core/v1/generated.proto (Secret: 1 metadata, 2 data, 3 type,
    4 stringData, 5 immutable) and apimachinery's ObjectMeta (1 name, 3 namespace, 6 resourceVersion,
    11 labels, 12 annotations)."""
    if not body.startswith(b"k8s\x00"):
        raise ValueError("not a Kubernetes protobuf envelope")
    unknown = dict(_fields(body[4:]))
    type_meta = dict(_fields(unknown[1]))
    secret = _fields(unknown[2])
    meta_raw = next((v for n, v in secret if n == 1), b"")
    meta_fields = _fields(meta_raw)
    meta: dict[str, Any] = {}
    for number, key in ((1, "name"), (3, "namespace"), (6, "resourceVersion")):
        value = next((v for n, v in meta_fields if n == number), None)
        if value:
            meta[key] = value.decode()
    for number, key in ((11, "labels"), (12, "annotations")):
        entries = [v for n, v in meta_fields if n == number]
        if entries:
            meta[key] = {k: v.decode() for k, v in _map(entries).items()}
    obj: dict[str, Any] = {"apiVersion": type_meta[1].decode(), "kind": type_meta[2].decode(), "metadata": meta}
    data = _map([v for n, v in secret if n == 2])
    if data:
        obj["data"] = {k: base64.b64encode(v).decode() for k, v in data.items()}
    kind = next((v for n, v in secret if n == 3), None)
    if kind:
        obj["type"] = kind.decode()
    return obj


class _Server(ThreadingHTTPServer):
    daemon_threads = True


Path_ = tuple[str, ...]


def _leaves(obj: Any, prefix: Path_ = ()) -> dict[Path_, Any]:
    """Field paths of every leaf (lists are atomic, as for ConfigMap/Secret fields), identity excluded.
    Paths are tuples: keys such as ``meta.helm.sh/release-name`` contain dots."""
    out: dict[Path_, Any] = {}
    for key, value in obj.items():
        if not prefix and key in _IDENTITY:
            continue
        if prefix == ("metadata",) and key in ("name", "namespace", "managedFields", "resourceVersion", "uid"):
            continue
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            out.update(_leaves(value, path))
        else:
            out[path] = value
    return out


def field_name(path: Path_) -> str:
    """How kube-apiserver prints a field in a conflict: ``.data.mode``."""
    return "." + ".".join(path)


def _get(obj: dict, path: Path_) -> Any:
    node: Any = obj
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(obj: dict, path: Path_, value: Any) -> None:
    node = obj
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = copy.deepcopy(value)


def _remove(obj: dict, path: Path_) -> None:
    chain = [obj]
    for part in path[:-1]:
        nxt = chain[-1].get(part)
        if not isinstance(nxt, dict):
            return
        chain.append(nxt)
    chain[-1].pop(path[-1], None)
    for depth in range(len(chain) - 1, 0, -1):  # drop maps left empty
        if not chain[depth]:
            chain[depth - 1].pop(path[depth - 1], None)


class ApplyApiDouble:
    def __init__(self, workdir: Path, token: str = "apply-double-token") -> None:
        cert, key, self.ca_pem = make_tls_material(workdir)
        self.token = token
        self.objects: dict[tuple[str, str, str], dict] = {}  # (resource, namespace, name) -> object
        self.owners: dict[tuple[str, str, str], dict[str, set[Path_]]] = {}  # key -> manager -> field paths
        self.operations: dict[tuple[str, str, str], dict[str, str]] = {}  # key -> manager -> Apply | Update
        self.requests: list[dict] = []
        self.unknown: list[str] = []
        self._revision = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                body = self._body() if self.command in ("POST", "PUT", "PATCH") else b""
                owner.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": query,
                        "content_type": self.headers.get("Content-Type", ""),
                    }
                )
                if self.headers.get("Authorization") != f"Bearer {owner.token}":
                    return self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
                if body and "protobuf" in self.headers.get("Content-Type", ""):
                    # helm's release storage writes its Secrets with client-go's protobuf encoding.
                    body = json.dumps(decode_protobuf_secret(body)).encode()
                with owner._lock:
                    code, reply = owner.dispatch(self.command, url.path, query, body, self.headers)
                self._reply(code, reply)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = _Server(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        for name in ("default", "kube-system"):
            self._write(("namespaces", "", name), _namespace(name), "kube-apiserver", created=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    # --- test API -------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "double",
                            "cluster": {
                                "server": self.endpoint,
                                "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                            },
                        }
                    ],
                    "users": [{"name": "double", "user": {"token": self.token}}],
                    "contexts": [{"name": "double", "context": {"cluster": "double", "user": "double"}}],
                    "current-context": "double",
                }
            )
        )
        return path

    def get(self, resource: str, namespace: str, name: str) -> dict | None:
        found = self.objects.get((resource, namespace, name))
        return copy.deepcopy(found) if found else None

    def managers(self, resource: str, namespace: str, name: str) -> dict[str, set[str]]:
        """Manager -> the fields it owns, printed as the API server prints them (``.data.mode``)."""
        owned = self.owners.get((resource, namespace, name), {})
        return {m: {field_name(p) for p in fields} for m, fields in owned.items() if fields}

    def applies(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "PATCH" and "apply-patch" in r["content_type"]]

    # --- the API --------------------------------------------------------------------------------
    def dispatch(self, method: str, path: str, query: dict, body: bytes, headers) -> tuple[int, dict]:
        if method == "GET" and path == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-eks", "platform": "linux/amd64"}
        if method == "GET" and path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if method == "GET" and path == "/apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if method == "GET" and path == "/api/v1":
            return 200, {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {
                        "name": r,
                        "singularName": k.lower(),
                        "namespaced": True,
                        "kind": k,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                    for r, k in _KINDS.items()
                ]
                + [
                    {
                        "name": "namespaces",
                        "singularName": "namespace",
                        "namespaced": False,
                        "kind": "Namespace",
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                ],
            }
        if path == "/api/v1/namespaces" and method == "POST":
            name = json.loads(body)["metadata"]["name"]
            if ("namespaces", "", name) in self.objects:
                return 409, _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            return 201, self._write(("namespaces", "", name), _namespace(name), query.get("fieldManager", "unknown"))
        if path.startswith("/api/v1/namespaces/") and path.count("/") == 4:
            name = path.rsplit("/", 1)[1]
            key = ("namespaces", "", name)
            if method == "PATCH" and "apply-patch" in headers.get("Content-Type", ""):
                return self._apply(key, "Namespace", yaml.safe_load(body), query)
            if method == "GET":
                if key not in self.objects:
                    return 404, _status(404, "NotFound", f'namespaces "{name}" not found')
                return 200, copy.deepcopy(self.objects[key])
        if method == "GET" and path == "/openapi/v3":
            return 200, {"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=double"}}}
        if method == "GET" and path == "/openapi/v3/api/v1":
            return 200, _OPENAPI_V1
        parts = path.strip("/").split("/")
        if len(parts) >= 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] in _KINDS:
            namespace, resource = parts[3], parts[4]
            name = parts[5] if len(parts) > 5 else None
            return self._resource(method, resource, namespace, name, query, body, headers)
        self.unknown.append(f"{method} {path}")
        return 404, _status(404, "NotFound", f"the double does not serve {path}")

    def _resource(self, method, resource, namespace, name, query, body, headers) -> tuple[int, dict]:
        kind = _KINDS[resource]
        if name is None and method == "GET":
            match = label_matcher(query.get("labelSelector"))
            items = [
                copy.deepcopy(o)
                for (r, ns, _), o in sorted(self.objects.items())
                if r == resource and ns == namespace and match(o["metadata"].get("labels") or {})
            ]
            return 200, {
                "kind": f"{kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._revision)},
                "items": items,
            }
        if name is None and method == "POST":
            obj = json.loads(body)
            key = (resource, namespace, obj["metadata"]["name"])
            if key in self.objects:
                return 409, _status(409, "AlreadyExists", f'{resource} "{key[2]}" already exists')
            return 201, self._write(key, obj, query.get("fieldManager", "unknown"), created=True)
        key = (resource, namespace, name)
        current = self.objects.get(key)
        if method == "GET":
            if current is None:
                return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
            return 200, copy.deepcopy(current)
        if method == "DELETE":
            if current is None:
                return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
            self.objects.pop(key)
            self.owners.pop(key, None)
            self.operations.pop(key, None)
            return 200, _status(200, "", "deleted") | {"status": "Success"}
        if method == "PUT":
            if current is None:
                return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
            return 200, self._write(key, json.loads(body), query.get("fieldManager", "unknown"))
        if method == "PATCH":
            content_type = headers.get("Content-Type", "")
            if "apply-patch" in content_type:
                return self._apply(key, kind, yaml.safe_load(body), query)
            if current is None:
                return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
            if "merge-patch" in content_type:
                patched = merge_patch(copy.deepcopy(current), json.loads(body))
                return 200, self._write(key, patched, query.get("fieldManager", "unknown"))
            return 415, _status(415, "UnsupportedMediaType", f"the double does not serve {content_type}")
        return 405, _status(405, "MethodNotAllowed", method)

    def _write(self, key, obj: dict, manager: str, *, created: bool = False) -> dict:
        """An Update operation: the object becomes ``obj``; ``manager`` owns the leaves it changed."""
        before = _leaves(self.objects.get(key) or {})
        after = _leaves(obj)
        owners = self.owners.setdefault(key, {})
        changed = {p for p, v in after.items() if created or before.get(p, object()) != v}
        for fields in owners.values():
            fields -= {p for p in fields if p not in after}
        for other, fields in owners.items():
            if other != manager:
                fields -= changed
        owners.setdefault(manager, set()).update(changed)
        self.operations.setdefault(key, {})[manager] = "Update"
        return self._store(key, obj)

    def _apply(self, key, kind: str, config: dict, query: dict) -> tuple[int, dict]:
        manager = query.get("fieldManager")
        if not manager:
            return 422, _status(422, "Invalid", "PATCH is not supported for apply without a fieldManager")
        force = query.get("force") == "true"
        current = self.objects.get(key)
        obj = copy.deepcopy(current) if current else {"apiVersion": "v1", "kind": kind, "metadata": {}}
        obj["metadata"].setdefault("name", key[2])
        if key[1]:
            obj["metadata"].setdefault("namespace", key[1])
        owners = self.owners.setdefault(key, {})
        applied = _leaves(config)
        conflicts = [
            (path, other)
            for path, value in applied.items()
            for other, fields in sorted(owners.items())
            if other != manager and path in fields and _get(obj, path) != value
        ]
        if conflicts and not force:
            if not current:
                self.owners.pop(key, None)
            causes = [
                {"type": "FieldManagerConflict", "message": f'conflict with "{o}" using v1', "field": field_name(p)}
                for p, o in conflicts
            ]
            listing = "\n".join(f'- conflict with "{o}" using v1: {field_name(p)}' for p, o in conflicts)
            message = f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: {listing}"
            status = _status(409, "Conflict", message)
            status["details"] = {"name": key[2], "kind": key[0], "causes": causes}
            return 409, status
        previously = owners.get(manager, set())
        for path in previously - set(applied):
            if not any(path in f for o, f in owners.items() if o != manager):
                _remove(obj, path)
        for path, value in applied.items():
            _set(obj, path, value)
        for other, fields in owners.items():
            if other != manager:
                fields -= set(applied)  # forced, or the same value: a shared field moves to the applier
        owners[manager] = set(applied)
        self.operations.setdefault(key, {})[manager] = "Apply"
        return (200 if current else 201), self._store(key, obj)

    def _store(self, key, obj: dict) -> dict:
        self._revision += 1
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if key[1]:
            meta["namespace"] = key[1]
        meta["resourceVersion"] = str(self._revision)
        meta.setdefault("uid", f"uid-{key[2]}")
        meta["managedFields"] = [
            {"manager": m, "operation": self.operations.get(key, {}).get(m, "Update"), "apiVersion": "v1"}
            for m, fields in sorted(self.owners.get(key, {}).items())
            if fields
        ]
        self.objects[key] = obj
        return copy.deepcopy(obj)


def _namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}}


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _kind_schema(kind: str, fields: dict) -> dict:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"allOf": [{"$ref": f"#/components/schemas/{_META}"}], "default": {}},
            **fields,
        },
        "x-kubernetes-group-version-kind": [{"group": "", "kind": kind, "version": "v1"}],
    }


# The parts of kube-apiserver's /openapi/v3/api/v1 document that describe what the tests apply.
_OPENAPI_V1 = {
    "openapi": "3.0.0",
    "info": {"title": "Kubernetes", "version": "v1.33.0"},
    # kube-apiserver lists fieldValidation on every PATCH; kubectl's query-param verifier (which helm uses)
    # reads it here and then leaves validation to the server (fieldValidation=Strict) instead of fetching
    # the protobuf OpenAPI v2 document for client-side validation.
    "paths": {
        f"/api/v1/namespaces/{{namespace}}/{resource}/{{name}}": {
            "patch": {
                "x-kubernetes-group-version-kind": {"group": "", "kind": kind, "version": "v1"},
                "parameters": [
                    {"name": name, "in": "query", "schema": {"type": "string"}}
                    for name in ("dryRun", "fieldManager", "fieldValidation", "force")
                ],
            }
        }
        for resource, kind in _KINDS.items()
    }
    | {
        "/api/v1/namespaces/{name}": {
            "patch": {
                "x-kubernetes-group-version-kind": {"group": "", "kind": "Namespace", "version": "v1"},
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            }
        }
    },
    "components": {
        "schemas": {
            "io.k8s.api.core.v1.ConfigMap": _kind_schema(
                "ConfigMap",
                {
                    "data": _STRING_MAP,
                    "binaryData": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                    "immutable": {"type": "boolean"},
                },
            ),
            "io.k8s.api.core.v1.Secret": _kind_schema(
                "Secret",
                {
                    "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                    "stringData": _STRING_MAP,
                    "type": {"type": "string"},
                    "immutable": {"type": "boolean"},
                },
            ),
            _META: {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "labels": _STRING_MAP,
                    "annotations": _STRING_MAP,
                    "resourceVersion": {"type": "string"},
                    "uid": {"type": "string"},
                    "creationTimestamp": {"type": "string", "format": "date-time"},
                    "managedFields": {"type": "array", "items": {"type": "object"}},
                },
            },
        }
    },
}
