"""yolov6-bench: runs end to end on a tiny config, writes the same rows as JSON and markdown, never fakes a figure;
gets its artifacts from the build path into its own cache and never touches the user's engines folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from yolov6_sdk._optional import available
from yolov6_sdk.artifact.sidecar import file_sha256
from yolov6_sdk.bench import (
    BenchOptions,
    BenchReport,
    BenchRow,
    Job,
    bench_jobs,
    measure,
    skip_reason,
    to_markdown,
)
from yolov6_sdk.cli.bench import main
from yolov6_sdk.errors import ConfigError


def _tree(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class TinyRun:
    """A bench run in a working folder that holds a user's ``engines/`` build, with the default cache."""

    work: Path  # the working directory: engines/, a yolov6-build output
    cache: Path  # where the bench's default cache lands ($XDG_CACHE_HOME/yolov6-sdk/bench)
    before: dict[str, str]  # the working folder's files before the run
    data: dict
    markdown: str
    code: int


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    from yolov6_sdk.cli.build import main as build_main

    work, xdg, reports = (tmp_path_factory.mktemp(name) for name in ("bench", "xdg", "reports"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        patch.setenv("XDG_CACHE_HOME", str(xdg))
        build = ["--random-weights", "--model", "yolov6n", "--imgsz", "160", "--backend", "onnxruntime"]
        assert build_main(build) == 0  # the user's engines/yolov6n-random-160-fp32.onnx
        before = _tree(work)
        argv = ["--bs", "1", "2", "--models", "yolov6n", "--imgsz", "160", "--iters", "3", "--warmup", "1"]
        argv += ["--backends", "torch", "onnxruntime", "tensorrt", "--precision", "fp32", "--device", "cpu"]
        argv += ["--json", str(reports / "out.json"), "--md", str(reports / "out.md")]
        argv += ["--note", "CPU shared with other jobs"]
        code = main(argv)
    data, markdown = json.loads((reports / "out.json").read_text()), (reports / "out.md").read_text()
    return TinyRun(work, xdg / "yolov6-sdk" / "bench", before, data, markdown, code)


def test_bench_leaves_the_users_engines_folder_byte_identical_and_writes_only_its_cache(tiny_run: TinyRun) -> None:
    built = sorted(name for name in tiny_run.before if ".ov-cache/" not in name)  # the CPU-runtime probe's cache
    assert built == ["engines/yolov6n-random-160-fp32.json", "engines/yolov6n-random-160-fp32.onnx"]
    assert _tree(tiny_run.work) == tiny_run.before
    assert {Path(row["artifact"]).parent for row in tiny_run.data["rows"] if row["artifact"]} == {tiny_run.cache}


def test_bench_times_torch_and_onnxruntime_and_writes_json_rows(tiny_run: TinyRun) -> None:
    data, code, cache = tiny_run.data, tiny_run.code, tiny_run.cache
    assert code == 0
    ran = [row for row in data["rows"] if row["status"] == "ok"]
    assert [(r["backend"], r["batch"]) for r in ran] == [
        ("torch", 1),
        ("torch", 2),
        ("onnxruntime", 1),
        ("onnxruntime", 2),
    ]
    for row in ran:
        assert row["model"] == "yolov6n" and row["precision"] == "fp32" and row["iters"] == 3
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["fps"] > 0
        assert row["e2e_p50_ms"] > 0 and row["e2e_fps"] > 0 and row["prepost_ms"] > 0
        assert Path(row["artifact"]).parent == cache
    checkpoint = "yolov6n-random-160-fp32.pt"  # untrained, seeded; every other artifact is built from it
    onnx_name = f"yolov6n-{file_sha256(cache / checkpoint)[:8]}-160-fp32.onnx"
    assert {Path(r["artifact"]).name for r in ran} == {checkpoint, onnx_name}
    assert data["command"].startswith("yolov6-bench --bs 1 2")
    assert data["machine"]["cpu"] and "onnxruntime" in data["machine"]


def test_bench_lists_what_the_machine_cannot_run_as_skipped(tiny_run: TinyRun) -> None:
    data = tiny_run.data
    trt = [row for row in data["rows"] if row["backend"] == "tensorrt"]
    assert len(trt) == 2
    for row in trt:
        assert row["status"] == "skipped" and row["p50_ms"] is None and row["fps"] is None
        assert "TensorRT" in row["reason"]


def test_markdown_has_machine_notes_and_one_table_with_the_json_rows(tiny_run: TinyRun) -> None:
    data, text = tiny_run.data, tiny_run.markdown
    assert "Command: `yolov6-bench --bs 1 2" in text and "- cpu: " in text
    assert "> CPU shared with other jobs" in text and "random initial weights" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| model | backend | precision | batch | p50 ms | p99 ms | FPS |")
    assert len(table) == 1 + len(data["rows"])
    first = data["rows"][0]
    assert table[1].startswith(f"| yolov6n | torch | fp32 | 1 | {first['p50_ms']:.2f} | {first['p99_ms']:.2f} |")


def test_second_run_reuses_its_cache_without_building(tiny_run: TinyRun, tmp_path: Path) -> None:
    written = {p: p.stat().st_mtime_ns for p in tiny_run.cache.iterdir()}
    argv = ["--bs", "1", "--imgsz", "160", "--iters", "1", "--warmup", "1", "--backends", "torch", "onnxruntime"]
    argv += ["--precision", "fp32", "--device", "cpu", "--cache", str(tiny_run.cache)]
    argv += ["--json", str(tmp_path / "again.json")]
    assert main(argv) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert [row["status"] for row in again["rows"]] == ["ok", "ok"]
    assert {p: p.stat().st_mtime_ns for p in tiny_run.cache.iterdir()} == written
    onnx_name = Path(again["rows"][1]["artifact"]).name
    assert f"{onnx_name}: reused in {tiny_run.cache}" in again["notes"]


def test_a_row_runs_its_whole_batch_in_one_backend_call(tiny_run: TinyRun, tmp_path: Path, monkeypatch) -> None:
    from yolov6_sdk.bench import BenchRunner
    from yolov6_sdk.runtime import detector as detector_module
    from yolov6_sdk.runtime.backends.onnxruntime import OnnxRuntimeBackend

    runs: list[int] = []
    infer = OnnxRuntimeBackend.infer

    def counted(self: OnnxRuntimeBackend, images: object) -> dict:
        runs.append(len(images))  # type: ignore[arg-type]
        return infer(self, images)

    monkeypatch.setattr(OnnxRuntimeBackend, "infer", counted)
    monkeypatch.setattr(detector_module, "DEFAULT_MAX_BATCH", 1)  # the Detector's default would run 1 at a time
    artifact = tiny_run.work / "engines" / "yolov6n-random-160-fp32.onnx"
    options = BenchOptions(artifacts=(artifact,), batch_sizes=(3,), iters=2, warmup=1, device="cpu", cache=tmp_path)
    row = BenchRunner(options).run(Job(artifact.stem, "onnxruntime", "fp32", 3, artifact))
    assert (row.status, row.reason) == ("ok", "") and runs == [3, 3, 3]  # warm-up + 2 timed calls


def test_skip_reasons_name_the_missing_piece() -> None:
    assert "fp16 needs a CUDA device" in skip_reason(Job("yolov6n", "onnxruntime", "fp16", 1), "cpu")
    assert "the torch backend runs fp32/fp16 only" in skip_reason(Job("yolov6n", "torch", "int8", 1), "cuda")
    assert "openvino runs on cpu; this run is on the cuda" in skip_reason(Job("yolov6n", "openvino", "fp32", 1), "cuda")
    assert "runs fp32/fp16/int8 only" in skip_reason(Job("yolov6n", "onnxruntime", "bf16", 1), "cpu")
    expected = "tensorrt is not installed" if not available("tensorrt") else "runs on cuda; this run is on the cpu"
    assert expected in skip_reason(Job("yolov6n", "tensorrt", "fp32", 1), "cpu")
    assert skip_reason(Job("yolov6n", "onnxruntime", "fp32", 32), "cpu") == ""


def test_jobs_cover_every_combination_in_table_order() -> None:
    options = BenchOptions(
        batch_sizes=(1, 32), models=("yolov6n", "yolov6s"), backends=("torch",), precisions=("fp32",)
    )
    assert [(j.model, j.batch) for j in bench_jobs(options)] == [
        ("yolov6n", 1),
        ("yolov6n", 32),
        ("yolov6s", 1),
        ("yolov6s", 32),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_sizes": (0,)},
        {"backends": ("tflite",)},
        {"precisions": ("int4",)},
        {"imgsz": (640, 600)},
        {"iters": 0},
        {"models": ()},
        {"artifacts": (Path("m.tflite"),)},
    ],
)
def test_bad_options_raise_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError):
        BenchOptions(**bad)


def test_measure_runs_the_asked_counts_and_adapts_otherwise() -> None:
    calls: list[int] = []
    samples = measure(lambda: calls.append(1), iters=4, warmup=2)
    assert len(samples) == 4 and len(calls) == 6 and all(s >= 0 for s in samples)
    calls.clear()
    adaptive = measure(lambda: calls.append(1), iters=None, warmup=None)
    assert len(adaptive) == 200 and len(calls) == 210  # instant runs: the count caps, not the time budget


def test_skipped_rows_show_the_reason_and_no_figures() -> None:
    report = BenchReport({"cpu": "test"}, [], [BenchRow("yolov6n", "tensorrt", "fp16", 1, "skipped", "no GPU")])
    row = [line for line in to_markdown(report).splitlines() if line.startswith("| yolov6n")][0]
    assert row == "| yolov6n | tensorrt | fp16 | 1 |  |  |  |  |  |  |  |  | skipped: no GPU |"
