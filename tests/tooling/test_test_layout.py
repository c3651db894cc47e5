"""Two test modules with the same import name break collection on whichever xdist worker gets both
("import file mismatch"), which a targeted run never shows: pytest imports a module outside a package by its
basename, so such basenames must be unique (or the folder a package)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _import_name(path: Path) -> str:
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def test_every_test_module_has_its_own_import_name():
    names = Counter(_import_name(p) for p in TESTS.rglob("test_*.py") if "fixtures" not in p.parts)
    assert [name for name, count in names.items() if count > 1] == []
