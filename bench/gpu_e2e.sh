#!/usr/bin/env bash
# The batch job end to end on one GPU with full-size random weights, and the OOM ladder under a
# memory cap (bench/RESULTS.md, "The batch job end to end on one GPU", "Real OOMs on a long clip").
#
#   [RUNS="mixed oom"] bash bench/gpu_e2e.sh OUT [STEPS]   (env: OOM_LIMIT_GB=26, LONG_OOM_LIMIT_GB=16.8)
#
# Machine: one CUDA GPU with at least 40 GiB (H100 or H200), 16 cores. Packages beside torch:
# diffusers, hydra-core, omegaconf, Ray, PyAV, sam2 (carried: `bash bench/carry_site.sh` here,
# .whl/ carried). STEPS defaults to 10.
#
# 1. writes a full-size random checkpoint tree (bench/write_random_ckpt.py) at $CKPT, once;
# 2. run "mixed": 2 demo clips with mask files + 2 click-prompted clips (SAM2 hiera-large, random
#    weights, on the same GPU: sam2.placement=auto -> shared), 49 frames at 480x720, STEPS steps;
# 3. run "oom": the 2 mask-file clips again, resident, with the actor capped at OOM_LIMIT_GB (26) GiB of GPU
#    memory (model.gpu_memory_limit_gb), so real CUDA OOMs drive the degradation ladder;
# 4. run "longoom" (not in the default RUNS): a 15 s clip (120 frames at 8 fps; its mask a box over a
#    quarter of the frame) with max_seconds=12 (97 frames, 2 windows) and ID resampling, model CPU
#    offload + VAE tiling, the actor capped at LONG_OOM_LIMIT_GB (16.8) GiB. Measured with
#    bench/long_windows.py at that mask: one ID window peaks at 15.6 GiB, two at 18.1 (the second
#    holds the first one's saved tokens): the second window should OOM, no memory saver is left, and
#    the ladder's 4 s rung (one window) should fit: the clip ends degraded, shorter;
# 5. run "idlong" (not in the default RUNS): 3 clips like longoom's (97 frames, 2 windows each) with ID
#    resampling on the whole GPU (no cap) and the default config otherwise: compile_blocks=auto
#    compiles where 3 x 2 windows x STEPS reach its 55 steps per actor (STEPS >= 10). Seconds per clip,
#    the first clip's extra time (the compile), the GPU's idle time between clips (the run's summary).
# Writes per run OUT/<run>.log, OUT/<run>/ (manifest, failures, each clip's meta.json, summary.txt),
# not the videos. "mixed" and "oom" take about 6 minutes together at 10 steps.
USAGE='[RUNS="mixed oom"] bash bench/gpu_e2e.sh OUT [STEPS]   (RUNS from: mixed oom longoom idlong)'
source "$(dirname "$0")/_common.sh"
parse_out "$@"
steps=${2:-10}
runs=${RUNS:-mixed oom}
[[ $steps =~ ^[1-9][0-9]*$ ]] || refuse "STEPS must be a positive integer, not '$steps'"
for run in $runs; do
    case $run in mixed|oom|longoom|idlong) ;; *) refuse "unknown run '$run' in RUNS: expected mixed, oom, longoom or idlong" ;; esac
done
require_cuda
carried_site torch diffusers hydra omegaconf ray av sam2
make_out
gpu_info
random_ckpt
work=/tmp/vp-e2e
mkdir -p "$work"

"$PYTHON" - "$work" <<'EOF' || exit 1
import sys, numpy as np, pandas as pd
from pathlib import Path
from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.clip.masks import save_vpdata_masks
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
pd.concat([long] * 3).assign(clip_id=[f"long{i}" for i in range(3)]).to_csv(work / "long3.csv", index=False)
EOF

common=(model=videopainter "model.base_model_path=$CKPT/CogVideoX-5b-I2V"
        "model.branch_path=$CKPT/VideoPainter/checkpoints/branch" "model.num_inference_steps=$steps"
        cluster.include_dashboard=false)

collect() {  # run name
    local run=$work/$1
    mkdir -p "$OUT/$1"
    cp "$run"/manifest.parquet "$run"/failures.parquet "$OUT/$1/" 2> /dev/null
    for meta in "$run"/clips/*/meta.json; do
        [ -f "$meta" ] && cp "$meta" "$OUT/$1/$(basename "$(dirname "$meta")").meta.json"
    done
    "$PYTHON" - "$run" > "$OUT/$1/summary.txt" 2>&1 <<'EOF'
import sys, pandas as pd
run = sys.argv[1]
cols = ["clip_id", "status", "num_frames", "attempts", "degraded", "effective_max_seconds", "memory_plan",
        "attention_backend", "peak_gpu_mem_gb", "time_prepare_s", "time_segment_s", "time_inpaint_s",
        "time_write_s", "compiled", "step_s_median", "warnings"]
m = pd.read_parquet(f"{run}/manifest.parquet")
print(m[[c for c in cols if c in m]].to_string())
f = pd.read_parquet(f"{run}/failures.parquet")
print(f.to_string() if len(f) else "no failures")
EOF
    cat "$OUT/$1/summary.txt"
}

launch() {  # run name, overrides...
    local name=$1; shift
    rm -rf "${work:?}/$name"
    local start
    start=$(date +%s)
    "$PYTHON" launch.py "output_dir=$work/$name" "${common[@]}" "$@" > "$OUT/$name.log" 2>&1
    echo "$name run: exit $? wall $(( $(date +%s) - start )) s" | tee -a "$OUT/$name.log"
    collect "$name"
}

for run in $runs; do
    case $run in
        mixed) launch mixed dataset=csv "dataset.path=$work/mixed.csv" sam2=large_random ;;
        oom) launch oom dataset=csv "dataset.path=$work/masks.csv" model.memory_mode=resident \
                 "model.gpu_memory_limit_gb=${OOM_LIMIT_GB:-26}" ;;
        longoom) launch longoom dataset=csv "dataset.path=$work/long.csv" max_seconds=12 model.id_resampling=true \
                     "model.id_lora_path=$CKPT/VideoPainterID/checkpoints/pytorch_lora_weights.safetensors" \
                     model.memory_mode=model_offload "model.gpu_memory_limit_gb=${LONG_OOM_LIMIT_GB:-16.8}" ;;
        idlong) launch idlong dataset=csv "dataset.path=$work/long3.csv" max_seconds=12 model.id_resampling=true \
                    "model.id_lora_path=$CKPT/VideoPainterID/checkpoints/pytorch_lora_weights.safetensors" ;;
    esac
done
