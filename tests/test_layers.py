"""Import layers that keep the package free of cycles, read from the source (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "yolov6_sdk"
TRAINING = ROOT / "training"  # installed as yolov6_sdk.training

LAYERS = (
    ("__main__",),  # python -m yolov6_sdk: the yolov6 command
    ("cli",),
    ("serve", "bench", "scoring"),
    ("training",),
    ("runtime", "export"),
    ("evaluate",),
    ("weights",),
    ("official",),
    ("artifact", "labels", "checkpoint_reader"),
    ("pickle_walk",),
    ("models",),
    ("", "errors", "fileio", "_optional", "machine"),  # the package root and the helpers everything may use
)
"""DESIGN's import order, top to bottom: a unit reaches units of lower layers only, never one of its own layer
(export and runtime never reach each other); the bottom layer's units may use each other."""


def _imports(path: Path, package: str = "") -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports inside functions included).

    ``package``: the dotted package ``path`` is in, to resolve relative imports (``from .losses import ...``).
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or node.level):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _module_files() -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package and of its training package."""
    files = {}
    for prefix, folder in (("yolov6_sdk", PACKAGE), ("yolov6_sdk.training", TRAINING)):
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            files[".".join((prefix, *(parts[:-1] if parts[-1] == "__init__" else parts)))] = path
    return files


def _import_graph() -> dict[str, set[str]]:
    """``{module: the package modules it runs when imported}``: what it imports, lazily or not, and the
    ``__init__`` of each package above those (importing ``a.b.c`` runs ``a.b`` first)."""
    files = _module_files()

    def known(name: str) -> list[str]:
        parts = name.split(".")
        found = [".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in files]
        return found[1:]  # the package root runs no import of its own (its exports are lazy), so it adds nothing

    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph[module] = {hit for name in _imports(path, package) for hit in known(name)} - {module}
    return graph


def _unit(module: str) -> str:
    """The layer unit of a module: ``yolov6_sdk.export.plan`` -> "export"; the package root -> ""."""
    return module.split(".")[1] if "." in module else ""


def _layer(unit: str) -> int:
    return next(i for i, units in enumerate(LAYERS) if unit in units)


def _upward_reach(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """``{module: the import chain to the first module it reaches against LAYERS}`` for every module that does."""
    bottom = len(LAYERS) - 1
    found = {}
    for start in sorted(graph):
        unit = _unit(start)
        chains, todo = {start: [start]}, [start]
        while todo:
            module = todo.pop()
            for reached in sorted(graph[module] - chains.keys()):
                chains[reached] = [*chains[module], reached]
                other = _unit(reached)
                if other != unit and _layer(other) <= _layer(unit) and not _layer(other) == _layer(unit) == bottom:
                    found.setdefault(start, chains[reached])
                todo.append(reached)
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


def test_every_unit_of_the_package_has_a_layer() -> None:
    assert {_unit(module) for module in _import_graph()} <= {unit for units in LAYERS for unit in units}


def test_no_module_reaches_a_layer_at_or_above_its_own_through_any_chain_of_imports() -> None:
    # lazy imports count: a function that imports the runtime makes its module reach the runtime when called
    assert _upward_reach(_import_graph()) == {}


def test_the_layer_check_follows_lazy_imports_through_other_modules(tmp_path: Path) -> None:
    graph = {"yolov6_sdk.export.sensitivity": {"yolov6_sdk.evaluate"}, "yolov6_sdk.evaluate": set(),
             "yolov6_sdk.runtime.detector": set()}  # fmt: skip
    (tmp_path / "lazy.py").write_text("def score():\n    from yolov6_sdk.runtime.detector import Detector\n")
    graph["yolov6_sdk.evaluate"] = {m for m in _imports(tmp_path / "lazy.py") if m in graph}
    assert _upward_reach(graph) == {
        "yolov6_sdk.evaluate": ["yolov6_sdk.evaluate", "yolov6_sdk.runtime.detector"],
        "yolov6_sdk.export.sensitivity": [
            "yolov6_sdk.export.sensitivity", "yolov6_sdk.evaluate", "yolov6_sdk.runtime.detector"
        ],
    }  # fmt: skip


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
