#!/usr/bin/env bash
# One prepared GPU check, under 8 minutes on one H100. Every figure goes to $OUT/figures.jsonl (one JSON line
# each), the console to $OUT/log.txt; each stage is bounded by what is left of BUDGET seconds.
#
#   here:        WITH_COVERS=1 bash ../shared/device/kit.sh          # .device-kit/ with wheels, Inception, covers64
#   on the GPU:  bash benchmarks/device_check.sh                      # with carry [".device-kit"]
#   smoke test on a CPU (tiny settings, no kit):  SMOKE=1 OUT=/tmp/check bash benchmarks/device_check.sh
#
# Stages: host synchronisations inside a training step (sync_audit.py); the engine against a hand-written loop
# at 64 and 128 px (bench_train.py); the speed grid (bench_speed.py: recipes x 64/128 px x batch 64/256 x AMP,
# and torch.compile where it fits the budget); a short run on real covers, scored against held-out covers, with
# the FID of the same images computed on the GPU and on the CPU (fid_devices.py).
set -u
OUT=${OUT:-/tmp/device-check}; mkdir -p "$OUT"
FIGURES=$OUT/figures.jsonl; : > "$FIGURES"
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s); BUDGET=${BUDGET:-470}; R=${SCRATCH:-/tmp/device-check-scratch}; mkdir -p "$R"
el() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
cap() { local left=$(( BUDGET - ($(date +%s) - T0) - 5 )); [ "$left" -lt "$1" ] && echo $(( left > 1 ? left : 1 )) || echo "$1"; }
record() { python3 -c 'import json, sys; print(json.dumps({"stage": sys.argv[1], "note": sys.argv[2]}))' "$1" "$2" >> "$FIGURES"; }

if [ -n "${SMOKE:-}" ]; then
  DEVICE=cpu; SIZES="16"; BATCHES="16"; WIDTH=8; STEPS=2; ROUNDS=1; RECIPES="wgan"; COMPILE="--no-compile"
  COVERS=${COVERS:-}; TRAIN_SECONDS=10; FID_IMAGES=32; SET="--set model.width=8 --set options.synthcovers.count=64"
  COVER_SET="--set model.width=8 --set schedule.batch_size=8"
else
  el setup
  source .device-kit/on-device.sh || { echo "kit install failed"; exit 1; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  DEVICE=cuda; SIZES="64 128"; BATCHES="64 256"; WIDTH=64; STEPS=20; ROUNDS=2; RECIPES=${RECIPES:-"wgan wgan+logan"}
  COMPILE="--compile-only wgan@64@256 wgan@128@256"
  COVERS=${COVERS:-.device-kit/covers64}; TRAIN_SECONDS=${TRAIN_SECONDS:-60}; FID_IMAGES=1000; SET=""; COVER_SET=""
fi
python3 -c 'import json, torch; print(json.dumps({"stage": "machine", "torch": torch.__version__,
  "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}))' >> "$FIGURES"

el "host synchronisations inside a training step"
for recipe in $RECIPES; do
  timeout "$(cap 60)" python3 benchmarks/sync_audit.py --recipe "$recipe" --size "${SIZES%% *}" \
    --batch "${BATCHES%% *}" --steps 10 $SET >> "$FIGURES" || record sync_audit "failed or timed out: $recipe"
done

el "engine against a plain loop"
for size in $SIZES; do
  timeout "$(cap 100)" python3 benchmarks/bench_train.py --size "$size" --batch "${BATCHES%% *}" --width "$WIDTH" \
    --steps $(( STEPS * 2 )) --rounds "$ROUNDS" --device "$DEVICE" --json-line >> "$FIGURES" \
    || record bench_train "failed or timed out at $size px"
done

el "speed grid"
timeout "$(cap 240)" python3 benchmarks/bench_speed.py --device "$DEVICE" --recipes $RECIPES --sizes $SIZES \
  --batches $BATCHES --width "$WIDTH" --steps "$STEPS" $COMPILE --budget $(( $(cap 240) - 30 )) >> "$FIGURES" \
  || record bench_speed "failed or timed out"

el "real covers: a short run, FID on the GPU and on the CPU"
if [ -n "$COVERS" ] && [ -d "$COVERS" ]; then
  G="python3 -m ganzoo"
  $G data prepare "$COVERS" --size 64 --out "$R/covers64" --quiet >/dev/null && \
  $G data split "$R/covers64" --held-out 0.15 --seed 0 --out "$R/split" --quiet >/dev/null && \
  timeout "$(cap $(( TRAIN_SECONDS + 40 )))" $G train ${TRAIN_RECIPE:-wgan} --set data.name="$R/split/train" \
    --set data.image_size=64 \
    --minutes "$(python3 -c "print($TRAIN_SECONDS / 60)")" --device "$DEVICE" --quiet --out "$R/run" $COVER_SET && \
  timeout "$(cap 120)" python3 benchmarks/fid_devices.py "$R/run" --ref "$R/split/held-out" -n "$FID_IMAGES" \
    --real "$FID_IMAGES" --devices "$DEVICE" cpu >> "$FIGURES" || record real_covers "failed or timed out"
else
  record real_covers "skipped: no covers folder (build the kit with WITH_COVERS=1)"
fi
el done
