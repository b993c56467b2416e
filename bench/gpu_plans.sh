#!/usr/bin/env bash
# On the GPU machine: the memory plans of memory_mode=auto, each measured on one 49-frame clip
# (seconds around the loop, peak memory), then auto under a 26 and a 31 GiB cap (long_windows.py).
#
#   bash bench/gpu_plans.sh OUT [STEPS]
#
# Needs only diffusers, hydra-core, omegaconf, antlr4 beside the machine's packages: .whl2/small.tar.xz
# (ignored; made from their wheels as in bench/carry_site.sh).
set -uo pipefail
OUT=${1:?usage: gpu_plans.sh OUT [STEPS]}
STEPS=${2:-10}
mkdir -p /tmp/site && tar -xJf .whl2/small.tar.xz -C /tmp/site || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
[ "${SKIP_PLANS:-}" ] || timeout 330 python3 bench/bench_videopainter.py --steps "$STEPS" --stock-steps "$STEPS" \
    --modes resident,text_encoder_offload,text_encoder_offload+untiled,resident+tiling \
    --out "$OUT/plans.json" > "$OUT/plans.log" 2>&1
[ "${SKIP_PLANS:-}" ] || tail -n 12 "$OUT/plans.log"
for cap in 26 31; do
    timeout 150 python3 bench/long_windows.py --steps 2 --windows 1 --cap $cap --out "$OUT/cap$cap.json" \
        > "$OUT/cap$cap.log" 2>&1
    python3 -c "import json; d = json.load(open('$OUT/cap$cap.json')); print('cap $cap', d['plan'], [(r['windows'], round(r['seconds'], 1), round(r['peak_allocated_gib'], 2), round(r['peak_reserved_gib'], 2)) for r in d['runs']])"
done
