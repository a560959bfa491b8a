#!/usr/bin/env bash
# Train the demo model on a CUDA GPU with the CPU demo recipe (same data, optimiser, schedule shape and
# augmentation), longer: more epochs fit in minutes there. Writes the run folder, the evaluation on the val set
# and on a val set of a seed never used in tuning, and the machine description under OUT_DIR.
#
#   bash benchmarks/train_gpu.sh OUT_DIR [EPOCHS]        # e.g. bash benchmarks/train_gpu.sh "$OUT" 60
#
# The weights it writes (OUT_DIR/run/best.pt) are evaluated again on the CPU before they are committed:
#   yolov6-eval --model OUT_DIR/run/best.pt --data data/shapes
set -euo pipefail
out=${1:?usage: train_gpu.sh OUT_DIR [EPOCHS]}
epochs=${2:-60}
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
  | tee "$out/machine.txt"
pip install -q -e '.[train]' 2>&1 | tail -1
[ -d data/shapes/annotations ] || yolov6-datagen data/shapes --train 5000 --val 100 --seed 0 --imgsz 256 320
[ -d data/shapes_seed7/annotations ] || yolov6-datagen data/shapes_seed7 --train 0 --val 100 --seed 7 --imgsz 256 320
rm -rf "$out/run"
yolov6-train --model yolov6n --data data/shapes --epochs "$epochs" --batch 16 --imgsz 160 --workers 8 --device cuda \
  --out "$out/run" --warmup-epochs 1 --min-warmup-iters 0 --ema-decay 0.999 --ema-tau 200 --eval-interval 2 \
  --nominal-batch 16 --lr0 0.02 --mosaic 0 --scale 0.3 --translate 0.1 2>&1 | grep -v "it/s" | tail -40 \
  | tee "$out/train.log"
for data in data/shapes data/shapes_seed7; do
  yolov6-eval --model "$out/run/best.pt" --data "$data" --device cuda | tee -a "$out/eval.txt"
done
