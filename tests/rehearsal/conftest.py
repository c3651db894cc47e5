"""Fixtures for the rehearsal: the session's one real ``cdk synth`` (``tests/app/conftest.py``) and
the tools SkyPilot's checks run (``tests/post_deploy/conftest.py``), reused rather than redefined."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.app.conftest import cdk_out  # noqa: F401 - the session's synthesized app
from tests.post_deploy.conftest import sky_tools_bin  # noqa: F401 - socat, nc, rsync, the layer's kubectl
from tests.rehearsal.rehearsal import REPO, Rehearsal

# What decides the synthesized templates; a cdk.out older than any of these rehearses old code.
SYNTH_INPUTS = ("app.py", "cdk.json", "config", "stacks", "constructs", "lifecycle_scripts")


def newest_input(repo: Path = REPO) -> tuple[float, Path]:
    files = [
        p
        for name in SYNTH_INPUTS
        for p in ([repo / name] if (repo / name).is_file() else (repo / name).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    ]
    newest = max(files, key=lambda p: p.stat().st_mtime)
    return newest.stat().st_mtime, newest


@pytest.fixture(scope="session")
def synthesized(cdk_out: Path) -> Path:  # noqa: F811 - the imported fixture, used
    """``cdk_out``, refused when it predates the code: the fixture reuses ``cdk.out`` under pytest's
    base temp folder's parent, which outlives the session when tests run without xdist."""
    mtime, newest = newest_input()
    built = (cdk_out / "manifest.json").stat().st_mtime
    if built < mtime:
        pytest.fail(
            f"{cdk_out} was synthesized before {newest.relative_to(REPO)} last changed, so it would rehearse "
            f"old templates; delete {cdk_out} (or run `python -m tests.rehearsal`, which synthesizes afresh)"
        )
    return cdk_out


@pytest.fixture
def rehearsal(synthesized: Path, sky_tools_bin: Path, tmp_path: Path) -> Iterator[Rehearsal]:  # noqa: F811
    with Rehearsal(synthesized, tmp_path / "rehearsal", sky_tools_bin) as run:
        yield run


@pytest.fixture
def corrupted(synthesized: Path, tmp_path: Path) -> Callable[[Callable[[dict[str, dict]], None]], Path]:
    """``corrupted(mutate)``: a copy of the cloud assembly whose templates ``mutate`` edited in place
    (``{stack name: template}``); assets are linked, not copied."""

    def make(mutate: Callable[[dict[str, dict]], None]) -> Path:
        copy = tmp_path / "cdk.out.corrupted"
        copy.mkdir()
        for path in synthesized.iterdir():
            if path.suffix == ".json":
                shutil.copyfile(path, copy / path.name)
            else:
                (copy / path.name).symlink_to(path)
        templates = {
            p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in copy.glob("*.template.json")
        }
        mutate(templates)
        for name, template in templates.items():
            (copy / f"{name}.template.json").write_text(json.dumps(template))
        return copy

    return make
