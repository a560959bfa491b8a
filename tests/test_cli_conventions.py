"""Every command spells shared options alike, documents every option, and runs under the one ``yolov6`` command."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from yolov6_sdk.cli import bench, build, detect, info, main, train
from yolov6_sdk.cli import eval as eval_cli
from yolov6_sdk.errors import ConfigError
from yolov6_sdk.export.options import BuildOptions
from yolov6_sdk.export.plan import plan_build

ROOT = Path(__file__).resolve().parents[1]
PARSERS = {
    "yolov6-detect": detect._parser,
    "yolov6-build": build._parser,
    "yolov6-bench": bench._parser,
    "yolov6-eval": eval_cli._parser,
    "yolov6-train": train._parser,
    "yolov6-info": info._parser,
}
# options whose values are a fixed vocabulary: they must list it
FIXED_VOCABULARY = {
    "--backend", "--backends", "--precision", "--calib-method", "--hardware-compat", "--optimizer", "--iou-type",
    "--ort-provider",
}  # fmt: skip


# what a command needs besides the option under test
REQUIRED = {"yolov6-detect": ["a.jpg", "--model", "m.pt"], "yolov6-eval": ["--model", "m.pt", "--data", "d"]}


def _parse(name: str, argv: list[str]) -> argparse.Namespace:
    from yolov6_sdk.cli.options import parse

    positionals = {"yolov6-detect": "sources", "yolov6-bench": "artifacts"}.get(name)
    return parse(PARSERS[name](), argv, positionals)


def _exit_code(run, *args) -> int:  # noqa: ANN001
    try:
        return run(*args)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code or 0)


# ------------------------------------------------------------------------------------------------ help text


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help_and_fixed_vocabularies_list_their_choices(name: str) -> None:
    parser = PARSERS[name]()
    for action in parser._actions:
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS and len(action.help) > 10, f"{name} {label}"
        if FIXED_VOCABULARY & set(action.option_strings):
            listed = action.choices or getattr(action, "valid", None)
            assert listed, f"{name} {label} takes a fixed vocabulary but lists no choices"
            assert all(str(choice) in parser.format_help() for choice in listed)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_lists_every_option(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(main.main, [name.removeprefix("yolov6-"), "--help"]) == 0
    text = capsys.readouterr().out
    for action in PARSERS[name]()._actions:
        for option in action.option_strings:
            assert option in text, f"{name} --help does not show {option}"


# ------------------------------------------------------------------------------------------ shared spellings


def test_output_is_dash_o_everywhere_and_old_names_are_deprecated_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    new = _parse("yolov6-detect", ["a.jpg", "--model", "m.pt", "-o", "out"])
    old = _parse("yolov6-detect", ["a.jpg", "--model", "m.pt", "--save-dir", "out"])
    assert new.output == old.output == "out"
    assert "--save-dir is deprecated and will be removed in the next release; use -o/--output" in (
        capsys.readouterr().err
    )
    assert _parse("yolov6-detect", ["a.jpg", "--model", "m.pt"]).output is None  # a new runs/detect/expN
    assert _parse("yolov6-train", ["--out", "runs/x"]).out == _parse("yolov6-train", ["--output", "runs/x"]).out
    assert "--out is deprecated and will be removed in the next release; use -o/--output" in capsys.readouterr().err
    assert _parse("yolov6-build", ["-o", "engines/x"]).output == Path("engines/x")


@pytest.mark.parametrize("name", ["yolov6-build", "yolov6-bench", "yolov6-eval", "yolov6-train", "yolov6-detect"])
def test_batch_and_bs_are_one_option(name: str) -> None:
    single = name in ("yolov6-eval", "yolov6-train", "yolov6-detect")
    values = ["4"] if single else ["1", "8"]
    want = 4 if single else [1, 8]
    base = REQUIRED.get(name, [])
    dest = "batch_sizes" if name == "yolov6-build" else "batch"  # yolov6-build's options are BuildOptions fields
    batch, bs = (getattr(_parse(name, [*base, flag, *values]), dest) for flag in ("--batch", "--bs"))
    assert batch == want == bs


@pytest.mark.parametrize("name", ["yolov6-detect", "yolov6-bench", "yolov6-eval", "yolov6-train"])
@pytest.mark.parametrize(("given", "device"), [("0", "cuda:0"), ("1", "cuda:1"), ("cuda:0", "cuda:0"),
                                               ("CUDA", "cuda"), ("cpu", "cpu"), ("auto", "auto")])  # fmt: skip
def test_device_takes_an_index_cuda_n_or_cpu(name: str, given: str, device: str) -> None:
    assert _parse(name, [*REQUIRED.get(name, []), "--device", given]).device == device


def test_an_unknown_device_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info_:
        _parse("yolov6-detect", ["a.jpg", "--model", "m.pt", "--device", "gpu"])
    assert info_.value.code == 2 and "cuda:N" in capsys.readouterr().err


def test_options_come_before_between_or_after_the_files() -> None:
    args = _parse("yolov6-bench", ["--bs", "1", "8", "engines/x.onnx", "engines/y.onnx", "--iters", "2"])
    assert args.batch == [1, 8] and args.artifacts == ["engines/x.onnx", "engines/y.onnx"] and args.iters == 2
    args = _parse("yolov6-bench", ["--precision", "int8", "engines/x.onnx", "--backends", "torch", "y.pt"])
    assert args.precisions == ["int8"] and args.backends == ["torch"] and args.artifacts == ["engines/x.onnx", "y.pt"]
    args = _parse("yolov6-bench", ["--models", "yolov6n", "yolov6s", "z.engine"])
    assert args.models == ["yolov6n", "yolov6s"] and args.artifacts == ["z.engine"]
    args = _parse(
        "yolov6-detect", ["a.jpg", "--model", "m.pt", "b.jpg", "--classes", "0", "2", "c.jpg", "--conf", ".5"]
    )
    assert sorted(args.sources) == ["a.jpg", "b.jpg", "c.jpg"] and args.classes == [0, 2] and args.conf == 0.5


def test_a_list_option_needs_one_value_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse("yolov6-bench", ["--bs", "engines/x.onnx"])
    assert "argument --bs: invalid literal for int" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse("yolov6-bench", ["--precision", "int4"])
    assert "invalid choice 'int4'" in capsys.readouterr().err


def test_detect_without_a_source_is_a_usage_error() -> None:
    assert _exit_code(detect.main, ["--model", "m.pt"]) == 2


# ------------------------------------------------------------------------------------------ the yolov6 command


def test_dispatcher_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in main.COMMANDS)
    assert main.main([]) == 2 and main.main(["deploy"]) == 2
    assert "unknown command 'deploy'" in capsys.readouterr().err


def test_datagen_help_runs_through_the_dispatcher(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(main.main, ["datagen", "--help"]) == 0
    assert "usage: yolov6 datagen" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["build", "detect", "bench", "eval", "train", "info"])
def test_usage_lines_name_the_dispatcher_when_run_through_it(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(main.main, [command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: yolov6 {command} ")
    assert _exit_code(main.main, [command, "--no-such-option"]) == 2
    assert f"yolov6 {command}: error" in capsys.readouterr().err


def test_dispatcher_runs_a_command_in_a_fresh_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "yolov6_sdk", "datagen", str(tmp_path / "set"), "--train", "1", "--val", "1",
         "--imgsz", "64", "96", "--classes", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    annotations = json.loads((tmp_path / "set" / "annotations" / "instances_val.json").read_text())
    assert len(annotations["images"]) == 1 and len(annotations["categories"]) == 2


def test_the_yolov6_script_and_extras_are_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["yolov6"] == "yolov6_sdk.cli.main:main"
    trt = project["optional-dependencies"]["trt"]
    assert any(req.startswith("torch") for req in trt)
    assert "tensorrt-cu12>=10,<11" in trt  # TensorRT 10 for CUDA 12 by default
    assert any(req.startswith("tensorrt-cu13>=11") for req in project["optional-dependencies"]["trt11"])


# ------------------------------------------------------------------------------------------ build messages


def test_build_summary_prints_map_as_a_fraction() -> None:
    from types import SimpleNamespace

    result = SimpleNamespace(
        sensitivity=None, seconds={}, cached=(), artifact=Path("engines/m.onnx"), size_bytes=1_000_000,
        precision="int8", backend="onnxruntime", float_layers=(), sidecar=Path("engines/m.json"),
        maps={"fp32 (onnx)": 0.7787, "int8 (onnx)": 0.7785},
    )  # fmt: skip
    assert build._summary(result)[-1] == "mAP50-95: fp32 (onnx) 0.7787  int8 (onnx) 0.7785"


def test_max_ap_drop_is_a_fraction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        plan_build(
            BuildOptions(random_weights=True, model="yolov6n", max_ap_drop=1.0, output=tmp_path, backend="onnxruntime")
        )
    plan = plan_build(BuildOptions(random_weights=True, model="yolov6n", output=tmp_path, backend="onnxruntime"))
    assert plan.options.max_ap_drop == 0.01


def test_model_without_weights_says_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info_:
        plan_build(BuildOptions(model="yolov6s", output=tmp_path, backend="onnxruntime"))
    message = str(info_.value)
    assert "--random-weights" in message and "releases/download" in message and "yolov6s.pt" in message


def test_tensorrt_builder_options_reach_the_plan_and_are_refused_elsewhere(tmp_path: Path) -> None:
    args = _parse("yolov6-build", ["--workspace", "8", "--timing-cache", "t.cache", "--hardware-compat",
                                   "ampere_plus", "--opset", "17"])  # fmt: skip
    assert (args.workspace_gib, args.timing_cache, args.hardware_compat, args.opset) == (8.0, Path("t.cache"),
                                                                                     "ampere_plus", 17)  # fmt: skip
    common = {"random_weights": True, "model": "yolov6n", "output": tmp_path, "backend": "onnxruntime"}
    with pytest.raises(ConfigError, match="--workspace, --hardware-compat set the TensorRT builder"):
        plan_build(BuildOptions(**common, workspace_gib=8, hardware_compat="ampere_plus"))
    with pytest.raises(ConfigError, match="13 or newer"):
        plan_build(BuildOptions(**common, opset=11))
    assert plan_build(BuildOptions(**common, opset=17)).opset == 17 and plan_build(BuildOptions(**common)).opset == 13


def test_engine_config_carries_the_builder_options() -> None:
    pytest.importorskip("yolov6_sdk.export.tensorrt")
    from yolov6_sdk.export.plan import engine_config

    config = engine_config("fp16", (1, 8), (640, 640), False, 8.0, Path("t.cache"), "same_compute_capability")
    assert (config.workspace_gib, config.timing_cache, config.hardware_compatibility) == (
        8.0, Path("t.cache"), "same_compute_capability")  # fmt: skip
    with pytest.raises(ConfigError):
        engine_config("fp16", (1,), (640, 640), False, 0.0)


def test_build_exports_with_the_asked_opset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yolov6_sdk.export.onnx as onnx_export
    from yolov6_sdk.export.build import build as run

    asked = []

    def export_onnx(model, path, options, metadata=None):  # noqa: ANN001, ANN202
        asked.append(options.opset)
        raise KeyboardInterrupt  # stop the build here: only the export settings are under test

    monkeypatch.setattr(onnx_export, "export_onnx", export_onnx)
    with pytest.raises(KeyboardInterrupt):
        run(random_weights=True, model="yolov6n", output=tmp_path, backend="onnxruntime", imgsz=64, opset=17)
    assert asked == [17]


# ------------------------------------------------------------------------------------------------- bench


def test_bench_fps_comes_from_the_median_beside_it_and_csv_holds_the_rows(tmp_path: Path) -> None:
    import torch
    from conftest import randomize_model

    from yolov6_sdk.models import build_model, fuse
    from yolov6_sdk.weights import save_checkpoint

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "m.pt", fuse(randomize_model(build_model("yolov6n", 3).eval())), imgsz=64)
    table = tmp_path / "rows.csv"
    argv = ["--batch", "1", "2", str(checkpoint), "--iters", "3", "--warmup", "1", "--device", "cpu", "--csv",
            str(table), "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert bench.main(argv) == 0
    rows = list(csv.DictReader(table.open()))
    assert [(r["backend"], r["batch"], r["status"]) for r in rows] == [("torch", "1", "ok"), ("torch", "2", "ok")]
    for row in rows:
        batch = int(row["batch"])
        assert float(row["fps"]) == pytest.approx(batch * 1000 / float(row["p50_ms"]), rel=1e-6)
        assert float(row["e2e_fps"]) == pytest.approx(batch * 1000 / float(row["e2e_p50_ms"]), rel=1e-6)


def test_busy_machine_warning_names_load_and_cores() -> None:
    from yolov6_sdk.bench import busy_machine_note

    assert busy_machine_note(load=1.5, cores=2) is None
    note = busy_machine_note(load=6.2, cores=2)
    assert note is not None and "load average 6.2 on 2 cores" in note and "rerun when it is idle" in note


# -------------------------------------------------------------------------------------------------- eval


def test_eval_save_json_is_coco_results_that_score_the_same_map(tmp_path: Path) -> None:
    faster_coco_eval = pytest.importorskip("faster_coco_eval")
    from yolov6_sdk.training.datagen import generate_dataset

    data = generate_dataset(tmp_path / "shapes", 0, 4, imgsz=(256, 320), seed=0)
    predictions, metrics = tmp_path / "predictions.json", tmp_path / "metrics.json"
    argv = ["--model", str(ROOT / "weights" / "yolov6n-shapes.pt"), "--data", str(data), "--device", "cpu",
            "--save-json", str(predictions), "--json", str(metrics)]  # fmt: skip
    assert eval_cli.main(argv) == 0
    entries = json.loads(predictions.read_text())
    assert entries and set(entries[0]) == {"image_id", "category_id", "bbox", "score"}
    ground_truth = faster_coco_eval.COCO(str(data / "annotations" / "instances_val.json"))
    scored = faster_coco_eval.COCOeval_faster(ground_truth, ground_truth.loadRes(str(predictions)), "bbox")
    scored.evaluate()
    scored.accumulate()
    scored.summarize()
    reported = json.loads(metrics.read_text())
    assert reported["mAP50-95"] > 0.1  # the demo model finds the demo shapes: a real score, not 0 == 0
    assert scored.stats[0] == pytest.approx(reported["mAP50-95"], abs=1e-9)
    assert scored.stats[1] == pytest.approx(reported["mAP50"], abs=1e-9)
