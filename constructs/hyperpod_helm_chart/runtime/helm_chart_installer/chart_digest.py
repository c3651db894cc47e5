"""The integrity pin of the HyperPod dependency chart: a sha256 over the chart's files.

GitHub builds commit archives on the fly and does not promise stable bytes, so a sha256 of the
tarball cannot be pinned ahead of time. What helm reads is the set of files under the chart
directory, so the pin covers exactly those:

    for every regular file under the chart directory, sorted by relative POSIX path (byte order):
        line = hex(sha256(file bytes)) + "  " + relative path + "\\n"    # sha256sum's own format
    digest = hex(sha256(all lines concatenated))

Directories, file modes and timestamps are not part of it (helm ignores them too). The same number
comes out of coreutils, from a checkout or an unpacked archive at the pinned commit:

    cd helm_chart/HyperPodHelmChart
    find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum

or from this module, which can also fetch the commit exactly as the deploy-time Lambda does:

    python -m constructs.hyperpod_helm_chart.runtime.helm_chart_installer.chart_digest DIR
    python -m constructs.hyperpod_helm_chart.runtime.helm_chart_installer.chart_digest \\
        --repository aws/sagemaker-hyperpod-cli --commit <40-hex> --chart-path helm_chart/HyperPodHelmChart
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 1 << 20


def chart_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative posix path, absolute path)`` for every regular file, in digest order.

    Symlinks are refused rather than followed or skipped: the deploy-time extraction never
    creates them, so a local tree that has one would not hash to what the Lambda computes.
    """
    found: list[tuple[bytes, str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            if full.is_symlink():
                raise ValueError(f"{full} is a symlink; the chart digest covers regular files only")
        for name in filenames:
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if "\n" in rel or "\\" in rel:
                # sha256sum escapes such names, which would break the documented equivalence.
                raise ValueError(f"{rel!r}: file names with newlines or backslashes are not supported")
            found.append((rel.encode("utf-8"), rel, full))
    for _, rel, full in sorted(found):
        yield rel, full


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def chart_files_sha256(root: Path) -> str:
    """The digest described in the module docstring."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    outer = hashlib.sha256()
    for rel, full in chart_files(root):
        outer.update(f"{file_sha256(full)}  {rel}\n".encode())
    return outer.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the chart files sha256 to pin as eks.helm_chart.files_sha256.")
    parser.add_argument("chart_dir", nargs="?", help="an unpacked chart directory")
    parser.add_argument("--repository", help="GitHub owner/name, e.g. aws/sagemaker-hyperpod-cli")
    parser.add_argument("--commit", help="full 40-character commit id")
    parser.add_argument("--chart-path", default="helm_chart/HyperPodHelmChart")
    parser.add_argument("--base-url", default=None, help="archive server (default https://codeload.github.com)")
    args = parser.parse_args(argv)
    if args.chart_dir:
        print(chart_files_sha256(Path(args.chart_dir)))
        return 0
    if not (args.repository and args.commit):
        parser.error("give a chart directory, or --repository and --commit to fetch one")
    from .chart_archive import CODELOAD_BASE_URL, fetch_chart  # only the fetch mode needs it

    with tempfile.TemporaryDirectory() as work:
        chart = fetch_chart(
            args.repository, args.commit, args.chart_path, Path(work), base_url=args.base_url or CODELOAD_BASE_URL
        )
        print(chart_files_sha256(chart))
    return 0


if __name__ == "__main__":
    sys.exit(main())
