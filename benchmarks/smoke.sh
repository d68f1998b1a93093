#!/usr/bin/env bash
# Every benchmark script in its --smoke mode (tiny sizes, seconds each), and the prepared GPU scripts in their
# SMOKE=1 CPU mode: that they still run after a change to ganzoo. Run by .ci/run after the tests; the figures they
# print are not measurements. Exits non-zero, naming the script, when one fails.
#
#   bash benchmarks/smoke.sh
set -u
cd "$(dirname "$0")"
ROOT=$(cd .. && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
failed=()
run() {  # run NAME COMMAND...: quiet unless it fails
  local started=$(date +%s)
  if timeout 600 "${@:2}" > "$SCRATCH/$1.log" 2>&1; then
    echo "smoke: $1 ok ($(( $(date +%s) - started )) s)"
  else
    echo "smoke: $1 FAILED; its last lines:"; tail -n 15 "$SCRATCH/$1.log"; failed+=("$1")
  fi
}
for script in bench_*.py leaderboard.py fid_devices.py sync_audit.py; do
  case "$script" in
    bench_logan.py) run "$script" python3 "$script" cost --smoke ;;
    *) run "$script" python3 "$script" --smoke ;;
  esac
done
run code_shape.py python3 code_shape.py
python3 -c 'import sys; from ganzoo.apps.toolkit import write_cover_folder; write_cover_folder(sys.argv[1], 48, 16)' \
  "$SCRATCH/covers" > /dev/null
run device_check.sh bash -c "cd '$ROOT' && SMOKE=1 OUT='$SCRATCH/device-check' SCRATCH='$SCRATCH/device-scratch' \
  COVERS='$SCRATCH/covers' bash benchmarks/device_check.sh && ! grep -q failed '$SCRATCH/device-check/figures.jsonl'"
run gpu_leaderboard.sh bash -c "cd '$ROOT' && SMOKE=1 OUT='$SCRATCH/gpu-leaderboard' SCRATCH='$SCRATCH/gpu-scratch' \
  COVERS='$SCRATCH/covers' bash benchmarks/gpu_leaderboard.sh"
if [ ${#failed[@]} -gt 0 ]; then
  echo "smoke: failed: ${failed[*]}"
  exit 1
fi
echo "smoke: every benchmark ran"
