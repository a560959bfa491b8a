"""benchmarks/gpu_check.sh on the CPU: argument handling, the dry run, and the files a run writes."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STEPS = ("env", "gpu-tests", "torch-cuda", "torch-graph", "demo-e2e", "prepost", "ort-cpu")
BENCHMARKS = ROOT / "benchmarks"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def _fake_python(folder: Path, fail_on: str = "") -> Path:
    """A stand-in interpreter: says CUDA is there, logs every call, fails when its arguments contain ``fail_on``."""
    path = folder / "fake-python"
    path.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$@" >> "{folder}/calls.txt"\n'
        f'if [ -n "{fail_on}" ] && [[ "$*" == *"{fail_on}"* ]]; then echo "step failed" >&2; exit 1; fi\n'
        "echo ok\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_dry_run_prints_every_command_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "figures"
    done = _run("--dry-run", str(out))
    assert done.returncode == 0, done.stderr
    for step in STEPS:
        assert f"# {step} (at most" in done.stdout
    assert "pytest -m 'gpu or tensorrt'" in done.stdout
    assert "--backends torch --precision fp32 fp16 --bs 1 32 --device cuda" in done.stdout
    assert (
        "--cuda-graph" in done.stdout and "--backends onnxruntime --precision fp32 --bs 1 --device cpu" in done.stdout
    )
    assert "gpu_prepost.py --device cuda" in done.stdout and f"--md {out}/bench_torch_cuda.md" in done.stdout
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [((), "give the folder"), (("--fast", "x"), "unknown option --fast"), (("a", "b"), "one OUT_DIR only")],
)
def test_bad_arguments_exit_2_with_the_usage(args: tuple[str, ...], message: str) -> None:
    done = _run(*args)
    assert done.returncode == 2 and message in done.stderr and "--dry-run OUT_DIR" in done.stderr


def test_help_shows_the_usage() -> None:
    done = _run("--help")
    assert done.returncode == 0 and "bash benchmarks/gpu_check.sh OUT_DIR" in done.stdout


def test_without_a_gpu_it_refuses_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "figures"
    done = _run(str(out), env={"PYTHON": sys.executable})
    assert done.returncode == 3 and "no CUDA device" in done.stderr
    assert not out.exists()


def test_a_run_writes_a_log_per_step_and_a_summary_and_goes_on_after_a_failure(tmp_path: Path) -> None:
    fake = _fake_python(tmp_path, fail_on="gpu_prepost.py")
    out = tmp_path / "figures"
    env = {"PYTHON": str(fake), "YOLOV6_GPU_CHECK_CACHE": str(tmp_path / "cache")}
    done = _run(str(out), env=env)
    assert done.returncode == 1 and "failed; figures in" in done.stdout
    for step in STEPS:
        assert (out / f"{step}.log").is_file()
    summary = (out / "summary.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1] for line in summary.splitlines() if " | `" in line}
    assert rows["prepost"] == "1" and rows["torch-cuda"] == "0" and rows["ort-cpu"] == "0"
    assert (out / "gpu_tests.txt").is_file() and not (out / "summary.md.tmp").exists()
    calls = (tmp_path / "calls.txt").read_text()
    assert calls.count("yolov6_sdk.cli.bench") == 5 and "-m pytest -m gpu or tensorrt" in calls


def test_defaults_fit_eight_minutes_with_warm_ups_python3_and_trained_weights_for_nms(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    limits = [int(n) for n in re.findall(r"\(at most (\d+)s\)", done.stdout)]
    assert len(limits) == len(STEPS) and sum(limits) <= 8 * 60
    commands = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert all(line.split()[0] in ("python3", "nvidia-smi;") for line in commands)
    warmups = [int(n) for n in re.findall(r"--warmup (\d+)", done.stdout)]
    assert len(warmups) == 6 and min(warmups) >= 3
    demo = commands[STEPS.index("demo-e2e")]
    assert demo.count("weights/yolov6n-shapes.pt") == 2 and "--cuda-graph" in demo


def test_prepost_counts_warm_ups_and_refuses_fewer_than_three(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_prepost
    finally:
        sys.path.remove(str(BENCHMARKS))
    runs: list[int] = []
    gpu_prepost.median_ms(lambda: runs.append(1), iters=2, sync=lambda: None, warmup=3)
    assert len(runs) == 5
    assert gpu_prepost.main(["--device", "cpu", "--warmup", "2", "--out", str(tmp_path / "p.md")]) == 2
    args = ["--device", "cpu", "--bs", "1", "--imgsz", "128", "--iters", "1", "--candidates", "5"]
    assert gpu_prepost.main([*args, "--out", str(tmp_path / "p.md")]) == 0
    text = (tmp_path / "p.md").read_text()
    assert "CPU pre includes the pinned upload of the float batch" in text and "after 3 warm-ups" in text
