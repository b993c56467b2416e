#!/usr/bin/env bash
# The memory plans of memory_mode=auto, each measured on one 49-frame clip (seconds around the
# loop, peak memory), then auto under a 26 and a 31 GiB cap (bench/RESULTS.md, "The memory plans
# on one clip").
#
#   bash bench/gpu_plans.sh OUT [STEPS]      (env: SKIP_PLANS=1 runs the caps alone)
#
# Machine: one CUDA GPU with at least 40 GiB (H100 or H200). Packages beside torch: diffusers,
# hydra-core, omegaconf (carried: `bash bench/carry_site.sh` here, .whl/ carried). Writes
# OUT/gpu.txt, OUT/plans.{json,log} (bench_videopainter.py) and OUT/cap26.*, cap31.*
# (long_windows.py --cap). About 8 minutes at 10 steps.
USAGE="bash bench/gpu_plans.sh OUT [STEPS]"
source "$(dirname "$0")/_common.sh"
parse_out "$@"
STEPS=${2:-10}
[[ $STEPS =~ ^[1-9][0-9]*$ ]] || refuse "STEPS must be a positive integer, not '$STEPS'"
require_cuda
carried_site torch diffusers hydra omegaconf
make_out
gpu_info
if [ -z "${SKIP_PLANS:-}" ]; then
    timeout 330 "$PYTHON" bench/bench_videopainter.py --steps "$STEPS" --stock-steps "$STEPS" \
        --modes resident,text_encoder_offload,text_encoder_offload+untiled,resident+tiling \
        --out "$OUT/plans.json" > "$OUT/plans.log" 2>&1
    tail -n 12 "$OUT/plans.log"
fi
for cap in 26 31; do
    timeout 150 "$PYTHON" bench/long_windows.py --steps 2 --windows 1 --cap $cap --out "$OUT/cap$cap.json" \
        > "$OUT/cap$cap.log" 2>&1 || { echo "cap $cap: failed, see $OUT/cap$cap.log"; tail -n 1 "$OUT/cap$cap.log"; continue; }
    "$PYTHON" - "$OUT/cap$cap.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"cap {report['cap_gib']:g} GiB: {report['plan']};",
      [(r["windows"], round(r["seconds"], 1), round(r["peak_allocated_gib"], 2), round(r["peak_reserved_gib"], 2))
       for r in report["runs"]], "(windows, s, peak allocated GiB, peak reserved GiB)")
PY
done
