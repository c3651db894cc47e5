"""Runs a Python Lambda function from its ``cdk.out`` asset in a child interpreter, as the Lambda
runtime would: the asset folder is the whole ``sys.path`` (``python -I -S``: no site-packages, so
the function only has what the asset bundles), the environment is the template's
``Environment.Variables`` plus what Lambda sets, and the ``Handler`` string is imported as written.
A wrong handler string or a missing module fails the way Lambda reports it
(``Runtime.ImportModuleError``, ``Runtime.HandlerNotFound``).

One process per function, kept for several invocations, like a warm Lambda container. Each
invocation is one JSON line in and one ``RESULT`` line out; everything else the function prints
(its JSON logs) is kept for error messages.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT = "\x1eRESULT "
_DRIVER = r"""
import importlib, json, sys, time, traceback
asset, handler_name, timeout, name = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
sys.path.insert(0, asset)
RESULT = "\x1eRESULT "

class Context:
    function_name = name
    memory_limit_in_mb = "256"
    def __init__(self, request_id):
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + timeout
    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))

module_name, _, function_name = handler_name.rpartition(".")
load_error = None
try:
    module = importlib.import_module(module_name)
except Exception as exc:
    load_error = {"errorType": "Runtime.ImportModuleError",
                  "errorMessage": f"Unable to import module '{module_name}': {exc}"}
else:
    handler = getattr(module, function_name, None)
    if not callable(handler):
        load_error = {"errorType": "Runtime.HandlerNotFound",
                      "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'"}

for number, line in enumerate(sys.stdin):
    event = json.loads(line)
    if load_error:
        reply = {"error": load_error}
    else:
        try:
            reply = {"result": handler(event, Context(f"req-{number}"))}
        except Exception as exc:
            reply = {"error": {"errorType": type(exc).__name__, "errorMessage": str(exc),
                               "stackTrace": traceback.format_exc().splitlines()}}
    print(RESULT + json.dumps(reply, default=str), flush=True)
"""


class LambdaError(RuntimeError):
    """The function raised (or could not be loaded); ``error`` is Lambda's error payload."""

    def __init__(self, function: str, error: dict[str, Any], logs: list[str]):
        self.function, self.error, self.logs = function, error, logs
        super().__init__(f"{function}: {error.get('errorType')}: {error.get('errorMessage')}")


@dataclass(frozen=True)
class LambdaSpec:
    """What the template says about a function: enough to run it."""

    logical_id: str
    name: str
    arn: str
    handler: str
    runtime: str
    asset: Path
    timeout: float
    environment: dict[str, str]


class LambdaProcess:
    def __init__(self, spec: LambdaSpec, *, aws_env: dict[str, str]):
        if not spec.runtime.startswith("python3"):
            raise ValueError(f"{spec.logical_id}: runtime {spec.runtime} cannot run in a Python child process")
        self.spec = spec
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(spec.asset),
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            **aws_env,
            **spec.environment,
        }
        self.logs: list[str] = []
        self._results: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-B",
                "-c",
                _DRIVER,
                str(spec.asset),
                spec.handler,
                str(spec.timeout),
                spec.name,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=spec.asset,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(RESULT):
                self._results.put(json.loads(line[len(RESULT) :]))
            else:
                self.logs.append(line.rstrip("\n"))
        self._results.put(None)  # the process ended

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run the handler once; LambdaError if it raised. Bounded by the function's own timeout."""
        assert self._process.stdin is not None
        mark = len(self.logs)
        self._process.stdin.write(json.dumps(event) + "\n")
        self._process.stdin.flush()
        try:
            reply = self._results.get(timeout=self.spec.timeout + 30)
        except queue.Empty:
            raise LambdaError(
                self.spec.logical_id,
                {"errorType": "Sandbox.Timedout", "errorMessage": f"no answer in {self.spec.timeout:g} s"},
                self.logs[mark:],
            ) from None
        if reply is None:
            raise LambdaError(
                self.spec.logical_id,
                {"errorType": "Runtime.ExitError", "errorMessage": "the runtime process exited"},
                self.logs[mark:],
            )
        if "error" in reply:
            raise LambdaError(self.spec.logical_id, reply["error"], self.logs[mark:])
        return reply["result"]

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._reader.join(timeout=5)


def aws_environment(endpoint: str, region: str) -> dict[str, str]:
    """The credentials/region Lambda injects, pointed at moto; nothing from this machine's AWS config."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
