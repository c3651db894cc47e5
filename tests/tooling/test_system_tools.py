"""scripts/system_tools.sh, the set-up step `make test` runs first: on a fresh machine it installs what SkyPilot
shells out to when it may, and otherwise stops with one line naming the command to run.

The script runs with a PATH of shims only, so each case decides exactly which tools, which user and which package
managers the "machine" has; every shim appends its argv to a log the test reads."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "system_tools.sh"


def _shim(bin_dir: Path, name: str, body: str = "exit 0") -> None:
    path = bin_dir / name
    path.write_text(f'#!/bin/bash\necho "{name} $*" >> "$SHIM_LOG"\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path: Path, *, tools: tuple[str, ...], uid: int, apt: bool, sudo: str | None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        _shim(bin_dir, tool)
    _shim(bin_dir, "id", f'[ "$1" = -u ] && echo {uid}')
    (bin_dir / "env").symlink_to("/usr/bin/env")
    if apt:
        _shim(bin_dir, "apt-get")
    if sudo == "passwordless":
        _shim(bin_dir, "sudo", '[ "$1" = -n ] && shift; [ "$1" = true ] && exit 0; exec "$@"')
    elif sudo == "asks":
        _shim(bin_dir, "sudo", "exit 1")
    log = tmp_path / "calls.log"
    log.touch()
    completed = subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        env={"PATH": str(bin_dir), "SHIM_LOG": str(log), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    calls = [line for line in log.read_text().splitlines() if not line.startswith("id ")]
    return completed, calls


def test_nothing_happens_when_socat_nc_and_rsync_are_present(tmp_path):
    completed, calls = _run(tmp_path, tools=("socat", "nc", "rsync"), uid=1000, apt=True, sudo=None)
    assert completed.returncode == 0, completed.stderr
    assert calls == []


def test_root_with_apt_get_installs_only_the_missing_packages(tmp_path):
    completed, calls = _run(tmp_path, tools=("rsync",), uid=0, apt=True, sudo=None)
    assert completed.returncode == 0, completed.stderr
    assert calls == ["apt-get update -qq", "apt-get install -y -qq socat netcat-openbsd"]


def test_passwordless_sudo_installs_through_sudo(tmp_path):
    completed, calls = _run(tmp_path, tools=(), uid=1000, apt=True, sudo="passwordless")
    assert completed.returncode == 0, completed.stderr
    assert calls == [
        "sudo -n true",
        "sudo -n apt-get update -qq",
        "apt-get update -qq",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat netcat-openbsd rsync",
        "apt-get install -y -qq socat netcat-openbsd rsync",
    ]


@pytest.mark.parametrize("sudo", [None, "asks"])
def test_without_root_or_passwordless_sudo_it_stops_with_the_one_command_to_run(tmp_path, sudo):
    completed, calls = _run(tmp_path, tools=("nc",), uid=1000, apt=True, sudo=sudo)
    assert completed.returncode == 1
    assert completed.stderr.splitlines() == [
        "system tools: socat rsync missing; run: sudo apt-get update && sudo apt-get install -y socat rsync"
    ]
    assert not any(call.startswith("apt-get") for call in calls)


def test_without_apt_get_it_names_the_tools_to_install(tmp_path):
    completed, _ = _run(tmp_path, tools=(), uid=0, apt=False, sudo=None)
    assert completed.returncode == 1
    (line,) = completed.stderr.splitlines()
    assert "no apt-get here" in line and "socat, nc and rsync" in line


def test_make_test_runs_the_set_up_and_lint_before_pytest():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert {"venv", "system-tools", "lint"} <= set(recipe.splitlines()[0].split())
    assert os.access(SCRIPT, os.X_OK)
