"""What a clean install gets: every third-party import resolves to a distribution pinned in the right requirements
file, and the lock agrees with those pins.

`pip install -r requirements.txt` alone must run the product (the app, the post-deploy CLI, the Lambda code);
test-only libraries belong in requirements-dev.txt. The lock (`make lock`) is what `make venv` installs, so a pin
changed by hand without refreshing it would silently not take effect."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = [REPO / "app.py", REPO / "config", REPO / "stacks", REPO / "constructs", REPO / "post_deploy"]
TEST_ONLY = [REPO / "tests", REPO / "benchmarks"]
_REQ_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)")


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            pins.update(_pins(path.parent / line[3:].strip()))
        elif m := _REQ_LINE.match(line):
            pins[_norm(m.group(1))] = m.group(3)
    return pins


def _direct(path: Path) -> set[str]:
    return {_norm(m.group(1)) for line in path.read_text().splitlines() if (m := _REQ_LINE.match(line.strip()))}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _files(roots: list[Path]):
    for root in roots:
        yield from ([root] if root.is_file() else sorted(p for p in root.rglob("*.py") if ".venv" not in p.parts))


def _local_names() -> set[str]:
    """Top-level names that are this repository's own: its packages, and the Lambda packages and modules that
    import each other by bare name inside their asset folders."""
    names = {"app", "config", "stacks", "post_deploy", "tests", "benchmarks", "conftest"}
    for path in REPO.rglob("*.py"):
        if ".venv" in path.parts or "cdk.out" in path.parts[len(REPO.parts) :][0]:
            continue
        names.add(path.stem)
        names.update(part for part in path.relative_to(REPO).parts[:-1])
    return names - {"constructs"}


def _third_party_imports(path: Path, local: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            top, _, rest = module.partition(".")
            if top == "constructs" and rest and rest.split(".")[0] in local:
                continue  # constructs/<name>/ in this repo, not the `constructs` distribution
            if top not in sys.stdlib_module_names and top not in local and top != "__future__":
                found.add(top)
    return found


@functools.cache
def _module_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    return {_norm(d) for d in _module_distributions().get(module, [])}


def _unlisted(roots: list[Path], allowed: set[str]) -> list[str]:
    local = _local_names()
    problems = []
    for path in _files(roots):
        for module in sorted(_third_party_imports(path, local)):
            dists = _distributions(module)
            if not dists:
                problems.append(f"{path.relative_to(REPO)}: import {module}: no installed distribution provides it")
            elif not dists & allowed:
                problems.append(f"{path.relative_to(REPO)}: import {module}: {sorted(dists)} not listed")
    return problems


def test_every_product_import_is_pinned_in_requirements_txt():
    assert _unlisted(PRODUCT, _direct(REPO / "requirements.txt")) == []


def test_every_test_import_is_pinned_in_requirements_dev_txt_or_requirements_txt():
    allowed = _direct(REPO / "requirements.txt") | _direct(REPO / "requirements-dev.txt")
    assert _unlisted(TEST_ONLY, allowed) == []


def test_the_check_sees_a_test_only_library_imported_by_the_product(tmp_path, monkeypatch):
    module = tmp_path / "uses_moto.py"
    module.write_text("import moto\nfrom kubernetes import client\nimport json\n")
    allowed = _direct(REPO / "requirements.txt")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    problems = _unlisted([module], allowed)
    assert problems == ["uses_moto.py: import moto: ['moto'] not listed"]


@pytest.mark.parametrize(
    ("requirements", "lock"),
    [("requirements-dev.txt", "requirements.lock"), ("requirements-checkov.txt", "requirements-checkov.lock")],
)
def test_the_lock_holds_every_hand_pinned_version(requirements, lock):
    pins, locked = _pins(REPO / requirements), _pins(REPO / lock)
    differing = {name: (version, locked.get(name)) for name, version in pins.items() if locked.get(name) != version}
    assert differing == {}, f"run `make lock`: {lock} disagrees with {requirements}"
    assert all("==" in line for line in (REPO / lock).read_text().splitlines() if line and line[0] not in " #")
