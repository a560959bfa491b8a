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


def _imports_under(folder: Path, layers: tuple[str, ...]) -> dict[str, list[str]]:
    """``{module file: [imports of the given layers]}`` for every module under ``folder`` that has any.

    A layer is a module path (``yolov6_sdk.runtime``): it matches the module and everything below it.
    ``from yolov6_sdk import runtime`` reads as ``yolov6_sdk.runtime`` and is caught too.
    """
    found = {}
    for path in sorted(folder.rglob("*.py")):
        hits = sorted(m for m in _imports(path) if any(m == layer or m.startswith(f"{layer}.") for layer in layers))
        if hits:
            found[str(path.relative_to(PACKAGE.parent))] = hits
    return found


def test_official_reader_returns_data_and_never_imports_the_checkpoint_module() -> None:
    assert not {m for m in _imports(PACKAGE / "official.py") if m.startswith("yolov6_sdk.weights")}
    assert "yolov6_sdk.official" in _imports(PACKAGE / "weights.py")  # one direction only


def test_export_never_imports_runtime() -> None:
    assert _imports_under(PACKAGE / "export", ("yolov6_sdk.runtime",)) == {}


def test_runtime_never_imports_export() -> None:
    assert _imports_under(PACKAGE / "runtime", ("yolov6_sdk.export",)) == {}


def test_nothing_in_the_sdk_below_the_cli_imports_training() -> None:
    # training/ is a separate source folder installed as yolov6_sdk.training (PACKAGE holds none of it); only
    # the CLIs sit above it (cli -> training -> {runtime, export} -> artifact), so yolov6-train may call the trainer
    found = _imports_under(PACKAGE, ("yolov6_sdk.training",))
    assert {path: hits for path, hits in found.items() if not path.startswith("yolov6_sdk/cli/")} == {}


def test_artifact_contract_imports_no_layer_above_it() -> None:
    above = ("yolov6_sdk.export", "yolov6_sdk.runtime", "yolov6_sdk.bench", "yolov6_sdk.cli")
    assert _imports_under(PACKAGE / "artifact", above) == {}
