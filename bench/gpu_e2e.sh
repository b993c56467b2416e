#!/usr/bin/env bash
# The batch job end to end on one GPU with full-size random weights (bench/RESULTS.md, "end to end").
#
#   bash bench/gpu_e2e.sh OUT_DIR [STEPS]   (env: RUNS="mixed oom" by default; OOM_LIMIT_GB=26)
#
# 1. writes a full-size random checkpoint tree (bench/write_random_ckpt.py) under /tmp;
# 2. run "mixed": 2 demo clips with mask files + 2 click-prompted clips (SAM2 hiera-large, random
#    weights, on the same GPU: sam2.placement=auto -> shared), 49 frames at 480x720, STEPS steps;
# 3. run "oom": the 2 mask-file clips again, resident, with the actor capped at OOM_LIMIT_GB (26) GiB of GPU
#    memory (model.gpu_memory_limit_gb), so real CUDA OOMs drive the degradation ladder;
# 4. run "longoom" (not in the default RUNS): a 15 s clip (120 frames at 8 fps; its mask a box over a
#    quarter of the frame) with max_seconds=12 (97 frames, 2 windows) and ID resampling, model CPU
#    offload + VAE tiling, the actor capped at LONG_OOM_LIMIT_GB (16.8) GiB. Measured with
#    bench/long_windows.py at that mask: one ID window peaks at 15.6 GiB, two at 18.1 (the second
#    holds the first one's saved tokens): the second window should OOM, no memory saver is left, and
#    the ladder's 4 s rung (one window) should fit: the clip ends degraded, shorter.
# Copies the manifests, failures, per-clip meta.json and logs to OUT_DIR (not the videos).
set -uo pipefail
out=${1:?usage: bench/gpu_e2e.sh OUT_DIR [STEPS]}
steps=${2:-10}
mkdir -p "$out"
work=/tmp/vp-e2e
ckpt=$work/ckpt
mkdir -p "$work"

python bench/write_random_ckpt.py --root "$ckpt" 2>&1 | tee "$out/ckpt.log" || exit 1

python - "$work" <<'EOF' || exit 1
import sys, numpy as np, pandas as pd
from pathlib import Path
from vp_ray.demo import ensure_demo_dataset
from vp_ray.masks import save_vpdata_masks
work = Path(sys.argv[1])
csv = ensure_demo_dataset(work / "demo", num_clips=2, num_frames=49, height=480, width=720)
rows = pd.read_csv(csv)
for col in ("video_path", "mask_path", "ground_truth_path"):
    rows[col] = [str(work / "demo" / p) for p in rows[col]]
clicks = [{"clip_id": f"click{i}", "video_path": rows.video_path[i], "prompt": "an empty street",
           "points": "[[300, 200, 1]]"} for i in range(2)]
pd.concat([rows, pd.DataFrame(clicks)]).to_csv(work / "mixed.csv", index=False)
rows.to_csv(work / "masks.csv", index=False)
long = pd.read_csv(ensure_demo_dataset(work / "demo_long", num_clips=1, num_frames=120, height=480, width=720))
for col in ("video_path", "mask_path", "ground_truth_path"):
    long[col] = [str(work / "demo_long" / p) for p in long[col]]
box = np.zeros((120, 480, 720), bool)
box[:, 120:360, 180:540] = True
save_vpdata_masks(long.mask_path[0], box)
long.to_csv(work / "long.csv", index=False)
EOF

common=(model=videopainter "model.base_model_path=$ckpt/CogVideoX-5b-I2V"
        "model.branch_path=$ckpt/VideoPainter/checkpoints/branch" "model.num_inference_steps=$steps"
        cluster.include_dashboard=false)

collect() {  # run name
    local run=$work/$1
    mkdir -p "$out/$1"
    cp "$run"/manifest.parquet "$run"/failures.parquet "$out/$1/" 2>/dev/null
    for meta in "$run"/clips/*/meta.json; do
        [ -f "$meta" ] && cp "$meta" "$out/$1/$(basename "$(dirname "$meta")").meta.json"
    done
    python - "$run" > "$out/$1/summary.txt" 2>&1 <<'EOF'
import sys, pandas as pd
run = sys.argv[1]
cols = ["clip_id", "status", "num_frames", "attempts", "degraded", "effective_max_seconds",
        "peak_gpu_mem_gb", "time_prepare_s", "time_segment_s", "time_inpaint_s", "time_write_s", "warnings"]
m = pd.read_parquet(f"{run}/manifest.parquet")
print(m[[c for c in cols if c in m]].to_string())
f = pd.read_parquet(f"{run}/failures.parquet")
print(f.to_string() if len(f) else "no failures")
EOF
}

runs=${RUNS:-mixed oom}
if [[ " $runs " == *" mixed "* ]]; then
start=$(date +%s)
python launch.py dataset=csv "dataset.path=$work/mixed.csv" "output_dir=$work/mixed" sam2=large_random \
    "${common[@]}" 2>&1 | tee "$out/mixed.log"
echo "mixed run wall: $(( $(date +%s) - start )) s" | tee -a "$out/mixed.log"
collect mixed
fi

if [[ " $runs " == *" oom "* ]]; then
start=$(date +%s)
python launch.py dataset=csv "dataset.path=$work/masks.csv" "output_dir=$work/oom" \
    model.memory_mode=resident "model.gpu_memory_limit_gb=${OOM_LIMIT_GB:-26}" "${common[@]}" 2>&1 | tee "$out/oom.log"
echo "oom run wall: $(( $(date +%s) - start )) s" | tee -a "$out/oom.log"
collect oom
fi

if [[ " $runs " == *" longoom "* ]]; then
start=$(date +%s)
python launch.py dataset=csv "dataset.path=$work/long.csv" "output_dir=$work/longoom" max_seconds=12 \
    model.id_resampling=true "model.id_lora_path=$ckpt/VideoPainterID/checkpoints/pytorch_lora_weights.safetensors" \
    model.memory_mode=model_offload "model.gpu_memory_limit_gb=${LONG_OOM_LIMIT_GB:-16.8}" "${common[@]}" \
    2>&1 | tee "$out/longoom.log"
echo "longoom run wall: $(( $(date +%s) - start )) s" | tee -a "$out/longoom.log"
collect longoom
fi
