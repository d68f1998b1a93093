#!/usr/bin/env bash
# The GPU leaderboard, under 8 minutes on one H100: 64 px covers64 split (15 % held out), every recipe (x seeds)
# trained side by side on the one GPU for MINUTES of wall-clock time, then scored against the held-out covers with
# 2,000 generated covers, beside the floor of real training covers. Markdown and JSON land in $OUT.
#
#   here:        WITH_COVERS=1 bash ../shared/device/kit.sh
#   on the GPU:  bash benchmarks/gpu_leaderboard.sh          # with carry [".device-kit"]
#   smoke test on a CPU:  SMOKE=1 OUT=/tmp/gpu-lb COVERS=../shared/data/covers640 bash benchmarks/gpu_leaderboard.sh
set -u
OUT=${OUT:-/tmp/gpu-leaderboard}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
R=${SCRATCH:-/tmp/gpu-leaderboard-scratch}; mkdir -p "$R"
RECIPES=${RECIPES:-"dcgan+wgan dcgan+ns+diffaug resnet+hinge+diffaug r3gan+rpgan+ada"}
if [ -n "${SMOKE:-}" ]; then
  DEVICE=cpu; SIZE=16; WIDTH=8; MINUTES=0.2; SEEDS="0"; GENERATED=32; COVERS=${COVERS:-}
else
  source .device-kit/on-device.sh || { echo "kit install failed"; exit 1; }
  DEVICE=cuda; SIZE=64; WIDTH=64; MINUTES=${MINUTES:-4}; SEEDS=${SEEDS:-"0 1 2"}; GENERATED=2000
  COVERS=${COVERS:-.device-kit/covers64}
fi
G="python3 -m ganzoo"
$G data prepare "$COVERS" --size "$SIZE" --out "$R/covers" --quiet > /dev/null || { echo "prepare failed"; exit 1; }
[ -d "$R/split" ] || $G data split "$R/covers" --held-out 0.15 --seed 0 --out "$R/split" --quiet > /dev/null
count=$(( $(echo $RECIPES | wc -w) * $(echo $SEEDS | wc -w) ))
python3 benchmarks/leaderboard.py --split "$R/split" --size "$SIZE" --width "$WIDTH" --minutes "$MINUTES" \
  --device "$DEVICE" --parallel "$count" --threads 2 --seeds $SEEDS --recipes $RECIPES --generated "$GENERATED" \
  --work "$R/runs" --grids "$OUT/grids" --out "$OUT/leaderboard-gpu.json" > "$OUT/leaderboard-gpu.md"
cat "$OUT/leaderboard-gpu.md"
