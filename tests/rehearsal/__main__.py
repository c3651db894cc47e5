"""``python -m tests.rehearsal [pytest args]``: synthesize the app afresh and run the rehearsal.

The session's ``cdk_out`` fixture keeps ``cdk.out`` beside pytest's base temp folder; a fresh
base temp folder per run therefore means a fresh ``cdk synth``, so this entry point never
rehearses templates from an older checkout. Extra arguments go to pytest (e.g. ``-k mismatch``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="rehearsal-"))
    try:
        return int(
            pytest.main(
                [
                    "-c",
                    str(REPO / "pytest.ini"),
                    "--rootdir",
                    str(REPO),
                    f"--basetemp={scratch / 'base'}",
                    "-p",
                    "no:cacheprovider",
                    "-v",
                    "-s",
                    str(REPO / "tests" / "rehearsal"),
                    *argv,
                ]
            )
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
