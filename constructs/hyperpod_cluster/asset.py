"""Builds the Lambda asset offline: the runtime package plus the synthesizing venv's own boto3/botocore.

Why bundle the SDK: the handler sends ``KubernetesConfig`` and ``NodeProvisioningMode``, which only recent
SageMaker models know, and the SDK inside a Lambda runtime is whatever AWS last shipped there. Copying the
pinned, already-installed packages needs no network (no ``pip install`` at synth time) and makes the Lambda
run exactly the SDK the tests ran.

Why trim: botocore's ``data/`` folder models every AWS service (tens of MB). The handlers call only
SageMaker and Step Functions, so only those models, plus the shared endpoint/partition/retry files, are
copied. The result is a few MB and is built once per set of inputs into a content-addressed folder, so
repeated synths (and tests) reuse it and the CDK asset hash stays the same from machine to machine.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

RUNTIME_SOURCE = Path(__file__).resolve().parent / "runtime"
RUNTIME_PACKAGE = "hyperpod_cluster_runtime"
# Service models the runtime uses; anything else in botocore/data is left out.
BOTOCORE_SERVICES = ("sagemaker", "stepfunctions")
# Import name -> distribution name. These are boto3's full runtime dependency closure (pure Python).
BUNDLED = {
    "boto3": "boto3",
    "botocore": "botocore",
    "s3transfer": "s3transfer",
    "jmespath": "jmespath",
    "dateutil": "python-dateutil",
    "six": "six",
    "urllib3": "urllib3",
}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def build(source: Path = RUNTIME_SOURCE, package: str = RUNTIME_PACKAGE) -> Path:
    """Return the staged asset folder, building it if this exact set of inputs was never built.

    ``source``/``package``: another runtime folder and the top-level package name it gets in the asset
    (the task-governance compute-quota handler is built the same way, with the same trimmed SDK)."""
    key = _inputs_key(source, package)
    target = Path(tempfile.gettempdir()) / f"{package.replace('_', '-')}-asset-{key}"
    if _intact(target):
        return target
    staging = Path(tempfile.mkdtemp(prefix=f"{package.replace('_', '-')}-asset-", dir=target.parent))
    try:
        _copy_tree(source, staging / package, keep=lambda rel: rel.suffix == ".py")
        for module in BUNDLED:
            _copy_module(module, staging)
        (staging / MANIFEST).write_text(_listing(staging))
        if target.exists():  # changed since it was built (e.g. something ran from it and wrote .pyc files)
            shutil.rmtree(target)
        try:
            os.rename(staging, target)
        except OSError:
            if not _intact(target):  # lost a race with a parallel build: theirs is complete
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


MANIFEST = ".manifest"


def _listing(root: Path) -> str:
    """Every file with its size: cheap to recompute, and it changes if anything was added or rewritten."""
    return "".join(
        f"{p.relative_to(root)}\t{p.stat().st_size}\n"
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    )


def _intact(target: Path) -> bool:
    manifest = target / MANIFEST
    return manifest.is_file() and manifest.read_text() == _listing(target)


def _inputs_key(source: Path, package: str) -> str:
    """Hash of everything that decides the asset's bytes: runtime sources (symlinks read through), the
    package name, package versions, this builder."""
    digest = hashlib.sha256(package.encode() + b"\0")
    for path in sorted(source.rglob("*.py")) + [Path(__file__).resolve()]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for module, distribution in sorted(BUNDLED.items()):
        digest.update(f"{module}={importlib.metadata.version(distribution)}\0".encode())
    digest.update(",".join(BOTOCORE_SERVICES).encode())
    return digest.hexdigest()[:20]


def _copy_module(module: str, destination: Path) -> None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{module} is not installed in this venv; install requirements.txt before synthesizing")
    origin = Path(spec.origin)
    if origin.name != "__init__.py":  # a single-file module such as six
        shutil.copyfile(origin, destination / origin.name)
        return
    root = origin.parent
    keep = _botocore_filter if module == "botocore" else _boto3_filter if module == "boto3" else (lambda rel: True)
    _copy_tree(root, destination / module, keep)


def _botocore_filter(rel: Path) -> bool:
    parts = rel.parts
    if parts[0] != "data" or len(parts) == 2:  # code, cacert.pem, and data/*.json shared by all services
        return True
    return parts[1] in BOTOCORE_SERVICES


def _boto3_filter(rel: Path) -> bool:
    parts = rel.parts
    return parts[0] != "data" or (len(parts) > 1 and parts[1] in BOTOCORE_SERVICES)


def _copy_tree(source: Path, destination: Path, keep) -> None:
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_dir() or "__pycache__" in rel.parts or path.suffix in _SKIP_SUFFIXES or not keep(rel):
            continue
        out = destination / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
