#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA GPU and CUDA torch (TensorRT optional): at most 8 minutes.
#
#   bash benchmarks/gpu_check.sh OUT_DIR            run everything, figures and logs under OUT_DIR
#   bash benchmarks/gpu_check.sh --dry-run OUT_DIR  print the commands only (no GPU needed, nothing written)
#
# Steps (each under its own time limit; a failed step is recorded and the next one runs):
#   env         nvidia-smi and the torch / CUDA versions                     -> env.txt
#   gpu-tests   pytest -m "gpu or tensorrt" (CUDA pre/post, torch CUDA backend, graphs, threads; TensorRT
#               engines where TensorRT is installed, skipped otherwise)       -> gpu_tests.txt, gpu_tests.xml
#   torch-cuda  yolov6-bench, torch backend on CUDA, fp32 + fp16, batch 1 and 32, without CUDA graphs
#   torch-graph the same with --cuda-graph                                   -> bench_torch_cuda*.{md,json,csv}
#               (model-only timings: untrained zoo weights give NMS no candidates)
#   demo-e2e    yolov6-bench on the trained demo weights (weights/yolov6n-shapes.pt), eager and --cuda-graph:
#               the end-to-end rows, whose NMS has candidates to work on  -> bench_demo_cuda*.{md,json,csv}
#   prepost     pre/post-processing, numpy on the CPU vs torch on CUDA, both from host frames to device input
#               and from device output to host detections               -> prepost.md
#   ort-cpu     yolov6-bench, ONNX Runtime fp32 on the CPU, batch 1 (reference) -> bench_ort_cpu.{md,json,csv}
# summary.md lists every step with its command, exit status and seconds.
#
# Every timed figure follows at least 3 warm-up runs; the step limits add up to 460 s.
#
# Environment: PYTHON (default python3), YOLOV6_GPU_CHECK_CACHE (the bench's build cache, default a temp folder
# outside OUT_DIR), YOLOV6_GPU_CHECK_MODELS (default yolov6n).
set -u

usage() {
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
}

dry_run=0
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *)
            if [ -n "$out" ]; then echo "gpu_check.sh: one OUT_DIR only, got $out and $1" >&2; usage >&2; exit 2; fi
            out="$1" ;;
    esac
    shift
done
if [ -z "$out" ]; then
    echo "gpu_check.sh: give the folder to write the figures to" >&2
    usage >&2
    exit 2
fi

case "$out" in /*) ;; *) out="$PWD/$out" ;; esac  # the steps run from the repository root
python_bin="${PYTHON:-python3}"
models="${YOLOV6_GPU_CHECK_MODELS:-yolov6n}"
cache="${YOLOV6_GPU_CHECK_CACHE:-${TMPDIR:-/tmp}/yolov6-gpu-check-cache}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
bench="$python_bin -m yolov6_sdk.cli.bench"
torch_bench="$bench --models $models --backends torch --precision fp32 fp16 --bs 1 32 --device cuda --iters 50 --warmup 10 --cache $cache"
demo_bench="$bench weights/yolov6n-shapes.pt --backends torch --bs 1 32 --device cuda --iters 30 --warmup 5 --cache $cache"

# name | seconds allowed | command  (commands are run by bash from the repository root)
steps=(
    "env|15|nvidia-smi; $python_bin -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0))'"
    "gpu-tests|140|$python_bin -m pytest -m 'gpu or tensorrt' -q -p no:cacheprovider --junitxml=$out/gpu_tests.xml tests"
    "torch-cuda|75|$torch_bench --md $out/bench_torch_cuda.md --json $out/bench_torch_cuda.json --csv $out/bench_torch_cuda.csv"
    "torch-graph|75|$torch_bench --cuda-graph --md $out/bench_torch_cuda_graph.md --json $out/bench_torch_cuda_graph.json --csv $out/bench_torch_cuda_graph.csv"
    "demo-e2e|60|$demo_bench --md $out/bench_demo_cuda.md --json $out/bench_demo_cuda.json --csv $out/bench_demo_cuda.csv && $demo_bench --cuda-graph --md $out/bench_demo_cuda_graph.md --json $out/bench_demo_cuda_graph.json --csv $out/bench_demo_cuda_graph.csv"
    "prepost|45|$python_bin benchmarks/gpu_prepost.py --device cuda --bs 1 32 --warmup 3 --out $out/prepost.md"
    "ort-cpu|50|$bench --models $models --backends onnxruntime --precision fp32 --bs 1 --device cpu --iters 20 --warmup 3 --cache $cache --md $out/bench_ort_cpu.md --json $out/bench_ort_cpu.json --csv $out/bench_ort_cpu.csv"
)

if [ "$dry_run" -eq 1 ]; then
    for step in "${steps[@]}"; do
        IFS='|' read -r name limit command <<<"$step"
        echo "# $name (at most ${limit}s)"
        echo "$command"
    done
    exit 0
fi

cd "$repo" || exit 1
if ! "$python_bin" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check.sh: no CUDA device visible to $python_bin (torch.cuda.is_available() is False);" \
        "run it on a GPU machine with CUDA torch, or use --dry-run to see the commands" >&2
    exit 3
fi
mkdir -p "$out" "$cache" || exit 1

summary="$out/summary.md"
{
    echo "# GPU check"
    echo
    echo "Command: \`bash benchmarks/gpu_check.sh $out\` ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    echo
    echo "| step | exit | seconds | command |"
    echo "|---|---|---|---|"
} >"$summary.tmp"
failed=0
for step in "${steps[@]}"; do
    IFS='|' read -r name limit command <<<"$step"
    echo "== $name (at most ${limit}s)"
    start=$(date +%s)
    timeout --kill-after=10 "$limit" bash -c "$command" >"$out/$name.log" 2>&1
    status=$?
    seconds=$(($(date +%s) - start))
    [ "$status" -eq 0 ] || failed=$((failed + 1))
    [ "$status" -eq 124 ] && echo "(timed out after ${limit}s)" >>"$out/$name.log"
    tail -n 5 "$out/$name.log"
    echo "| $name | $status | $seconds | \`${command//|/\\|}\` |" >>"$summary.tmp"
done
[ -f "$out/gpu-tests.log" ] && cp "$out/gpu-tests.log" "$out/gpu_tests.txt"
[ -f "$out/env.log" ] && cp "$out/env.log" "$out/env.txt"
mv "$summary.tmp" "$summary"
echo "== $failed step(s) failed; figures in $out, steps in $summary"
[ "$failed" -eq 0 ]
