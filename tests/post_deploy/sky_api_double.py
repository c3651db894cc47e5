"""A loopback stand-in for the SkyPilot 0.14.1 API server, for tests of the ``submit`` step.

The real SDK (``sky.launch``, ``sky.stream_and_get``, ``sky.tail_logs``, ``sky.down``,
``sky.jobs.launch``, ``sky.jobs.tail_logs``) talks to it over HTTP exactly as it talks to a real
API server, so the code under test is exercised through the SkyPilot client unchanged. What the
double answers is built with SkyPilot's own server-side code wherever the wire format matters:

- request bodies are parsed into the server's pydantic payload models (``payloads.LaunchBody``,
  ...); a body the real server would reject gets the same 422;
- request results go through ``requests_lib.Request.encode()`` with the server's encoders, and
  failures through ``Request.set_error`` / ``exceptions.serialize_exception``, so the client
  decodes and re-raises them as it would in production;
- health, version headers and request-id headers match ``sky/server/server.py``.

What is scripted (``Scenario``) is only what a cluster would decide: whether the launch fails and
with which exception, the job's log lines and exit code. State that follows from the calls is
kept, not scripted: a launch creates the cluster, ``down`` removes it, logs of a cluster that does
not exist fail with ``ClusterDoesNotExist`` the way ``sky.core.tail_logs`` does.

Endpoints (from ``sky/client/sdk.py`` and ``sky/jobs/client/sdk.py``): GET /api/health,
POST /validate, POST /launch, POST /down, POST /logs, POST /jobs/launch, POST /jobs/logs,
POST /volumes/apply, GET /api/stream, GET /api/get, POST /api/cancel. Anything else is recorded in ``unknown`` and
answered 404, so a new SDK call shows up in the test instead of passing silently.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pydantic
import sky
from sky import core, exceptions, execution
from sky.jobs.server import core as jobs_core
from sky.server import common as server_common
from sky.server import constants as server_constants
from sky.server import versions
from sky.server.requests import payloads
from sky.server.requests import requests as requests_lib
from sky.utils import dag_utils
from sky.volumes.server import core as volumes_core


@dataclass
class Scenario:
    """What the cluster side decides; everything else follows from the calls."""

    validate_error: BaseException | None = None  # /validate answers 400 with this
    launch_error: BaseException | None = None  # the launch request fails with this
    launch_log: list[str] = field(default_factory=lambda: ["Launching on Kubernetes (fake)\n"])
    job_id: int | None = 1  # None: the launch submitted no job (a task without `run`)
    job_log: list[str] = field(default_factory=lambda: ["hello from the job\n"])
    job_exit_code: int = 0
    down_error: BaseException | None = None
    volume_error: BaseException | None = None  # /volumes/apply fails with this (e.g. the PVC is missing)


@dataclass
class _Req:
    request: requests_lib.Request
    log: list[str]


# SDK path -> (payload model, request name, server-side entrypoint the real server records)
_ENDPOINTS: dict[str, tuple[type[payloads.RequestBody], str, Callable]] = {
    "/launch": (payloads.LaunchBody, "launch", execution.launch),
    "/down": (payloads.StopOrDownBody, "down", core.down),
    "/logs": (payloads.ClusterJobBody, "logs", core.tail_logs),
    "/jobs/launch": (payloads.JobsLaunchBody, "jobs.launch", jobs_core.launch),
    "/jobs/logs": (payloads.JobsLogsBody, "jobs.logs", jobs_core.tail_logs),
    "/volumes/apply": (payloads.VolumeApplyBody, "volume_apply", volumes_core.volume_apply),
}


class SkyApiDouble:
    """Serve on 127.0.0.1:<free port>; ``url`` is what SKYPILOT_API_SERVER_ENDPOINT points at."""

    def __init__(self, scenario: Scenario | None = None):
        self.scenario = scenario or Scenario()
        self.calls: list[tuple[str, str, Any]] = []  # (method, path, parsed body or query)
        self.unknown: list[tuple[str, str]] = []
        self.clusters: dict[str, dict] = {}  # cluster name -> {"task": dict, "jobs": {id: exit}}
        self.managed_jobs: dict[int, int] = {}  # job id -> exit code
        self.volumes: dict[str, dict] = {}  # volume name -> the VolumeApplyBody it was registered with
        self._requests: dict[str, _Req] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def __enter__(self) -> SkyApiDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def paths(self) -> list[str]:
        return [f"{method} {path}" for method, path, _ in self.calls]

    def bodies(self, path: str) -> list[Any]:
        return [body for _, p, body in self.calls if p == path]

    # --- request execution (what the server's executor would do) --------------------------------

    def _execute(self, path: str, body: payloads.RequestBody) -> _Req:
        _, name, entrypoint = _ENDPOINTS[path]
        request = requests_lib.Request(
            request_id=requests_lib.get_new_request_id(),
            name=server_constants.REQUEST_NAME_PREFIX + name,
            entrypoint=entrypoint,
            request_body=body,
            status=requests_lib.RequestStatus.RUNNING,
            created_at=time.time(),
            user_id=body.env_vars.get("SKYPILOT_USER_ID", "test-user"),
            cluster_name=getattr(body, "cluster_name", None),
        )
        log: list[str] = []
        try:
            result, log = getattr(self, "_run_" + name.replace(".", "_"))(body)
        except Exception as exc:  # noqa: BLE001 - becomes the request's error, as on the server
            request.status = requests_lib.RequestStatus.FAILED
            request.set_error(exc)
        else:
            request.status = requests_lib.RequestStatus.SUCCEEDED
            request.set_return_value(result)
        request.finished_at = time.time()
        with self._lock:
            self._requests[request.request_id] = _Req(request, log)
        return self._requests[request.request_id]

    def _run_launch(self, body: payloads.LaunchBody):
        dag = dag_utils.load_dag_from_yaml_str(body.task)
        task = dag.tasks[0]
        if self.scenario.launch_error is not None:
            raise self.scenario.launch_error
        cluster = self.clusters.setdefault(body.cluster_name, {"jobs": {}})
        cluster["task"] = task.to_yaml_config()
        job_id = self.scenario.job_id if task.run else None
        if job_id is not None:
            cluster["jobs"][job_id] = self.scenario.job_exit_code
        return (job_id, None), list(self.scenario.launch_log)

    def _run_down(self, body: payloads.StopOrDownBody):
        if body.cluster_name not in self.clusters:
            raise exceptions.ClusterDoesNotExist(f"Cluster {body.cluster_name!r} does not exist.")
        if self.scenario.down_error is not None:
            raise self.scenario.down_error
        del self.clusters[body.cluster_name]
        return None, [f"Terminating cluster {body.cluster_name}...done.\n"]

    def _run_logs(self, body: payloads.ClusterJobBody):
        cluster = self.clusters.get(body.cluster_name)
        if cluster is None:
            raise exceptions.ClusterDoesNotExist(f"Cluster {body.cluster_name!r} does not exist.")
        if body.job_id not in cluster["jobs"]:
            return int(exceptions.JobExitCode.NOT_FOUND), [f"Job {body.job_id} not found.\n"]
        return cluster["jobs"][body.job_id], list(self.scenario.job_log)

    def _run_jobs_launch(self, body: payloads.JobsLaunchBody):
        dag_utils.load_dag_from_yaml_str(body.task)
        if self.scenario.launch_error is not None:
            raise self.scenario.launch_error
        job_id = self.scenario.job_id or 1
        self.managed_jobs[job_id] = self.scenario.job_exit_code
        return ([job_id], None), ["Submitted managed job (fake)\n"]

    def _run_volume_apply(self, body: payloads.VolumeApplyBody):
        """Registers the volume as the server's volume table would; applying a known name again is a
        no-op (``volume_apply``: "Volume ... already exists")."""
        if self.scenario.volume_error is not None:
            raise self.scenario.volume_error
        if body.name in self.volumes:
            return None, [f"Volume {body.name} already exists.\n"]
        self.volumes[body.name] = body.model_dump()
        return None, [f"Created volume {body.name} on cloud {body.cloud}\n"]

    def _run_jobs_logs(self, body: payloads.JobsLogsBody):
        if body.job_id not in self.managed_jobs:
            raise ValueError(f"No managed job with ID {body.job_id}")
        return self.managed_jobs[body.job_id], list(self.scenario.job_log)

    # --- HTTP -------------------------------------------------------------------------------------

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one response per connection; streams end at close

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _headers(
                self,
                status: int,
                request_id: str | None = None,
                content_type="application/json",
                extra: dict | None = None,
                length: int | None = None,
            ):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header(server_constants.API_VERSION_HEADER, str(server_constants.API_VERSION))
                self.send_header(server_constants.VERSION_HEADER, versions.get_local_readable_version())
                self.send_header("X-Skypilot-Request-ID", request_id or requests_lib.get_new_request_id())
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()

            def _json(self, status: int, payload: Any, request_id: str | None = None):
                data = json.dumps(payload).encode()
                self._headers(status, request_id, length=len(data))
                self.wfile.write(data)

            def _stream(self, lines: list[str], request_id: str, extra: dict | None = None):
                self._headers(200, request_id, content_type="text/plain", extra=extra)
                for line in lines:
                    self.wfile.write(line.encode())
                    self.wfile.flush()

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"null")

            def do_GET(self):
                parsed = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                double.calls.append(("GET", parsed.path, query))
                if parsed.path == "/api/health":
                    self._json(
                        200,
                        {
                            "status": server_common.ApiServerStatus.HEALTHY.value,
                            "api_version": str(server_constants.API_VERSION),
                            "version": sky.__version__,
                            "version_on_disk": sky.__version__,
                            "commit": sky.__commit__,
                            "basic_auth_enabled": False,
                            "user": None,
                        },
                    )
                elif parsed.path == "/api/get":
                    req = double._find(query.get("request_id", ""))
                    if req is None:
                        self._json(404, {"detail": f"Request {query.get('request_id')!r} not found"})
                    elif req.request.error is not None:
                        self._json(500, {"detail": req.request.encode().model_dump()})
                    else:
                        self._json(200, req.request.encode().model_dump())
                elif parsed.path == "/api/stream":
                    req = double._find(query.get("request_id", ""))
                    if req is None:
                        self._json(404, {"detail": f"Request {query.get('request_id')!r} not found"})
                    else:
                        rid = req.request.request_id
                        self._stream(req.log, rid, {server_constants.STREAM_REQUEST_HEADER: rid})
                else:
                    double.unknown.append(("GET", parsed.path))
                    self._json(404, {"detail": "Not Found"})

            def do_POST(self):
                path = urlparse(self.path).path
                body = self._body()
                double.calls.append(("POST", path, body))
                if path == "/validate":
                    try:
                        payloads.ValidateBody(**body)
                        dag_utils.load_dag_from_yaml_str(body["dag"])
                    except pydantic.ValidationError as exc:
                        return self._json(422, {"detail": exc.errors(include_url=False, include_context=False)})
                    if double.scenario.validate_error is not None:
                        err = double.scenario.validate_error
                        return self._json(400, {"detail": exceptions.serialize_exception(err)})
                    return self._json(200, None)
                if path == "/api/cancel":
                    return self._json(200, None)
                if path not in _ENDPOINTS:
                    double.unknown.append(("POST", path))
                    return self._json(404, {"detail": "Not Found"})
                model = _ENDPOINTS[path][0]
                try:
                    parsed = model(**body)
                except pydantic.ValidationError as exc:
                    return self._json(422, {"detail": exc.errors(include_url=False, include_context=False)})
                req = double._execute(path, parsed)
                if path in ("/logs", "/jobs/logs"):
                    # The real server streams the job's log on this very response.
                    return self._stream(req.log, req.request.request_id)
                return self._json(200, None, req.request.request_id)

        return Handler

    def _find(self, request_id: str) -> _Req | None:
        with self._lock:
            matches = [r for rid, r in self._requests.items() if rid.startswith(request_id)] if request_id else []
        return matches[0] if len(matches) == 1 else None
