"""mAP on the demo set enlarged 4x: JPEGs decoded at the size the model needs score as full decodes do."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "yolov6n-shapes.pt"


def _benchmark():
    spec = importlib.util.spec_from_file_location("reduced_decode_map", ROOT / "benchmarks" / "reduced_decode_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_reduced_decode_changes_map_by_at_most_0_3_points(tmp_path: Path) -> None:
    figures = _benchmark().measure(WEIGHTS, tmp_path)
    assert figures["full"]["map50_95"] > 0.5  # the demo weights detect on the enlarged pictures
    assert abs(figures["reduced"]["map50_95"] - figures["full"]["map50_95"]) <= 0.003
