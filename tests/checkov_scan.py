"""Runs the real checkov (its own venv, `make venv`) over synthesized templates and returns what a reviewer must
see: every failed check, and every skip whose reason is missing or too thin to review."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MIN_REASON = 40  # characters: "n/a" or "false positive" is not a reason


def checkov_executable() -> Path:
    # The checkov venv sits inside the project venv (Makefile), next to the interpreter running the tests.
    path = Path(sys.executable).parent.parent / "checkov" / "bin" / "checkov"
    if not path.exists():
        pytest.fail(f"checkov not installed at {path}: run `make venv`")
    return path


def scan(templates: list[Path]) -> list[dict]:
    assert templates, "no templates to scan"
    completed = subprocess.run(
        [
            str(checkov_executable()),
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--compact",
            "--skip-download",
            *(arg for t in templates for arg in ("-f", str(t))),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": tempfile.mkdtemp(prefix="checkov-home-"), "LOG_LEVEL": "ERROR"},
    )
    if completed.returncode not in (0, 1) or not completed.stdout.strip():
        pytest.fail(f"checkov did not run ({completed.returncode}): {completed.stderr[-2000:]}")
    reports = json.loads(completed.stdout)
    return reports if isinstance(reports, list) else [reports]


def unexplained(reports: list[dict]) -> list[str]:
    problems = []
    for report in reports:
        results = report.get("results", {})
        for failed in results.get("failed_checks", []):
            problems.append(f"{failed['check_id']} failed: {Path(failed['file_path']).name} {failed['resource']}")
        for skipped in results.get("skipped_checks", []):
            reason = (skipped.get("check_result", {}).get("suppress_comment") or "").strip()
            if len(reason) < MIN_REASON:
                problems.append(
                    f"{skipped['check_id']} skipped without a reviewable reason ({reason!r}): {skipped['resource']}"
                )
    return problems


def passed_and_skipped(reports: list[dict]) -> tuple[int, int]:
    summaries = [r.get("summary", {}) for r in reports]
    return sum(s.get("passed", 0) for s in summaries), sum(s.get("skipped", 0) for s in summaries)
