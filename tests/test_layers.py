"""Import layers that keep the package free of cycles, read from the source (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "yolov6_sdk"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_official_reader_returns_data_and_never_imports_the_checkpoint_module() -> None:
    assert not {m for m in _imports(PACKAGE / "official.py") if m.startswith("yolov6_sdk.weights")}
    assert "yolov6_sdk.official" in _imports(PACKAGE / "weights.py")  # one direction only
