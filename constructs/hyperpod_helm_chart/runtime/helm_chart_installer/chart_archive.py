"""Fetch one chart directory out of a GitHub commit archive, refusing anything unsafe.

The chart is not published to any Helm repository, so the only source is the repository itself at
a pinned commit. GitHub serves that as ``<base>/<owner>/<name>/tar.gz/<commit>`` with one top folder
``<name>-<commit>/``. The archive is untrusted input until its chart files pass the digest check,
so extraction never lets the archive choose where bytes land: no absolute or ``..`` names, no links
or device files, bounded size and file count, and only the requested chart path is written.
"""

from __future__ import annotations

import http.client
import logging
import os
import posixpath
import re
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

LOG = logging.getLogger(__name__)

CODELOAD_BASE_URL = "https://codeload.github.com"
# The whole sagemaker-hyperpod-cli archive is a few tens of MiB; the chart a few MiB.
MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
MAX_CHART_BYTES = 64 * 1024 * 1024
MAX_CHART_FILES = 5000
# Members outside the chart are skipped but still inflated while reading past them.
MAX_UNPACKED_BYTES = 2 * 1024 * 1024 * 1024
_CHUNK = 1 << 20
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_RETRYABLE_HTTP = {408, 429, 500, 502, 503, 504}


class ChartArchiveError(RuntimeError):
    """The archive could not be fetched, or is not a safe archive of the requested chart."""


def archive_url(base_url: str, repository: str, commit: str) -> str:
    return f"{base_url.rstrip('/')}/{repository}/tar.gz/{commit}"


def normalized_chart_path(chart_path: str) -> str:
    """``chart_path`` as a clean relative POSIX path, or a ChartArchiveError naming it."""
    clean = chart_path.strip("/")
    parts = clean.split("/")
    if not clean or chart_path.startswith("/") or "\\" in chart_path or any(p in ("", ".", "..") for p in parts):
        raise ChartArchiveError(f"ChartPath {chart_path!r} must be a relative path inside the repository (no '..')")
    return clean


def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    timeout: float = 60,
    attempts: int = 4,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Download ``url`` to ``dest``; retry transient faults, stop at ``max_bytes``. Returns the size."""
    for attempt in range(1, attempts + 1):
        try:
            return _download_once(url, dest, max_bytes, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code not in _RETRYABLE_HTTP:
                hint = " (unknown repository or commit?)" if exc.code == 404 else ""
                raise ChartArchiveError(f"GET {url} returned HTTP {exc.code}{hint}") from None
            fault = f"HTTP {exc.code}"
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
            fault = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt == attempts:
            raise ChartArchiveError(f"GET {url} failed after {attempts} attempts, last error {fault}")
        delay = min(2 ** (attempt - 1), 8)
        LOG.warning("GET %s failed (%s), retry %d/%d in %ss", url, fault, attempt, attempts - 1, delay)
        sleep(delay)
    raise AssertionError("unreachable")


def _download_once(url: str, dest: Path, max_bytes: int, timeout: float) -> int:
    request = urllib.request.Request(url, headers={"User-Agent": "hyperpod-helm-chart-installer"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - https URL built from validated parts
        declared = response.headers.get("Content-Length")
        if declared is not None and int(declared) > max_bytes:
            raise ChartArchiveError(f"GET {url}: archive is {declared} bytes, over the {max_bytes}-byte limit")
        size = 0
        with open(dest, "wb") as out:
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ChartArchiveError(f"GET {url}: archive exceeds the {max_bytes}-byte limit")
                out.write(chunk)
        if declared is not None and size != int(declared):
            raise http.client.IncompleteRead(b"", int(declared) - size)
    return size


def extract_chart(
    archive: Path,
    top_folder: str,
    chart_path: str,
    dest: Path,
    *,
    max_bytes: int = MAX_CHART_BYTES,
    max_files: int = MAX_CHART_FILES,
) -> Path:
    """Write ``<top_folder>/<chart_path>/**`` from ``archive`` into ``dest``; return the chart root.

    Every member of the archive is checked (a hostile name anywhere means the archive is not
    what GitHub serves, so nothing from it is trusted), but only members under the chart path are
    written, with exclusive creates so a duplicate member cannot overwrite an earlier one.
    """
    chart_path = normalized_chart_path(chart_path)
    prefix = f"{top_folder}/{chart_path}"
    dest.mkdir(parents=True, exist_ok=False)
    total = files = unpacked = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                unpacked += member.size
                if unpacked > MAX_UNPACKED_BYTES:
                    raise ChartArchiveError(f"archive unpacks to more than {MAX_UNPACKED_BYTES} bytes")
                rel = _checked_relative(member.name, top_folder, prefix)
                if rel is None:
                    continue
                target = dest.joinpath(*rel.split("/")) if rel else dest
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg():
                    kind = "symlink" if member.issym() else "hard link" if member.islnk() else "special file"
                    raise ChartArchiveError(
                        f"archive member {member.name!r} is a {kind}; only regular files are accepted"
                    )
                files += 1
                if files > max_files:
                    raise ChartArchiveError(f"chart {chart_path!r} has more than {max_files} files")
                if total + member.size > max_bytes:
                    raise ChartArchiveError(
                        f"chart {chart_path!r} exceeds the {max_bytes}-byte size limit at {member.name!r}"
                    )
                total += _write_member(tar, member, target, dest)
    except tarfile.TarError as exc:
        raise ChartArchiveError(f"archive is not a readable tar.gz: {exc}") from None
    if not (dest / "Chart.yaml").is_file():
        if files == 0:
            raise ChartArchiveError(f"chart path {chart_path!r} not found in the archive (no {prefix}/ in it)")
        raise ChartArchiveError(f"{chart_path!r} has no Chart.yaml; it is not a chart directory")
    LOG.info("extracted %d files (%d bytes) of %s", files, total, prefix)
    return dest


def _checked_relative(name: str, top_folder: str, prefix: str) -> str | None:
    """Path of ``name`` below the chart root ('' for the root), None when outside it; raise if unsafe."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name or re.match(r"^[A-Za-z]:", name):
        raise ChartArchiveError(f"archive member {name!r} has an absolute or non-POSIX path")
    parts = name.rstrip("/").split("/")
    if any(p == ".." for p in parts):
        raise ChartArchiveError(f"archive member {name!r} escapes the archive root ('..')")
    clean = posixpath.normpath(name)
    if clean != top_folder and not clean.startswith(top_folder + "/"):
        raise ChartArchiveError(f"archive member {name!r} is outside the expected top folder {top_folder!r}/")
    if clean == prefix:
        return ""
    if clean.startswith(prefix + "/"):
        return clean[len(prefix) + 1 :]
    return None


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, root: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.commonpath([os.path.realpath(target.parent), os.path.realpath(root)]) != os.path.realpath(root):
        raise ChartArchiveError(f"archive member {member.name!r} resolves outside the chart directory")
    source = tar.extractfile(member)
    if source is None:
        raise ChartArchiveError(f"archive member {member.name!r} has no data")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError:
        raise ChartArchiveError(f"archive member {member.name!r} appears twice") from None
    written = 0
    with os.fdopen(fd, "wb") as out, source:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > member.size:
                raise ChartArchiveError(f"archive member {member.name!r} is longer than its header says")
            out.write(chunk)
    return written


def fetch_chart(
    repository: str,
    commit: str,
    chart_path: str,
    workdir: Path,
    *,
    base_url: str = CODELOAD_BASE_URL,
    sleep: Callable[[float], None] = time.sleep,
    max_archive_bytes: int = MAX_ARCHIVE_BYTES,
    max_chart_bytes: int = MAX_CHART_BYTES,
) -> Path:
    """Download ``repository`` at ``commit`` and extract ``chart_path``; return the chart directory."""
    if not _REPOSITORY.match(repository):
        raise ChartArchiveError(f"Repository {repository!r} must be a GitHub owner/name")
    if not _COMMIT.match(commit):
        raise ChartArchiveError(f"Commit {commit!r} must be a full 40-character lowercase commit id")
    normalized_chart_path(chart_path)
    workdir.mkdir(parents=True, exist_ok=True)
    archive = workdir / "source.tar.gz"
    url = archive_url(base_url, repository, commit)
    size = download(url, archive, max_bytes=max_archive_bytes, sleep=sleep)
    LOG.info("downloaded %s (%d bytes)", url, size)
    try:
        top_folder = f"{repository.split('/', 1)[1]}-{commit}"
        return extract_chart(archive, top_folder, chart_path, workdir / "chart", max_bytes=max_chart_bytes)
    finally:
        archive.unlink(missing_ok=True)
