"""The chart files digest: same number as the documented coreutils pipeline, and a CLI to pin it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from constructs.hyperpod_helm_chart.runtime.helm_chart_installer import chart_digest

from .support import CHART_PATH, COMMIT, REPOSITORY, sha256sum_digest

MODULE = "constructs.hyperpod_helm_chart.runtime.helm_chart_installer.chart_digest"
ROOT = Path(__file__).resolve().parents[2]  # `python -m` is run from the repository root, as users would


def test_sort_order_and_names_match_sha256sum_byte_for_byte(tmp_path):
    # Names whose order differs between naive, locale and byte sorting, nested paths, an empty file.
    for name, data in {
        "Z.yaml": b"z",
        "a-b": b"1",
        "a/b": b"2",
        "a.b": b"3",
        "a/B/c.tpl": b"4",
        "\u00fcber.txt": "\u00fc".encode(),
        "empty": b"",
        "charts/x/Chart.yaml": b"name: x\n",
    }.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "empty-dir").mkdir()  # directories do not count
    assert chart_digest.chart_files_sha256(tmp_path) == sha256sum_digest(tmp_path)


def test_file_mode_and_mtime_do_not_change_the_digest(tmp_path):
    (tmp_path / "Chart.yaml").write_text("name: x\n")
    before = chart_digest.chart_files_sha256(tmp_path)
    os.chmod(tmp_path / "Chart.yaml", 0o755)
    os.utime(tmp_path / "Chart.yaml", (1, 1))
    assert chart_digest.chart_files_sha256(tmp_path) == before


def test_symlinks_are_refused(tmp_path):
    (tmp_path / "Chart.yaml").write_text("name: x\n")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "Chart.yaml")
    with pytest.raises(ValueError, match="link.yaml is a symlink"):
        chart_digest.chart_files_sha256(tmp_path)


def test_cli_prints_the_digest_of_a_directory(github):
    out = subprocess.run(
        [sys.executable, "-m", MODULE, str(github.chart_dir)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == sha256sum_digest(github.chart_dir)


def test_cli_fetches_the_commit_like_the_lambda_does(github):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            MODULE,
            "--repository",
            REPOSITORY,
            "--commit",
            COMMIT,
            "--chart-path",
            CHART_PATH,
            "--base-url",
            github.base_url,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == sha256sum_digest(github.chart_dir)


def test_cli_without_a_source_explains_its_usage():
    out = subprocess.run([sys.executable, "-m", MODULE], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "give a chart directory, or --repository and --commit" in out.stderr
