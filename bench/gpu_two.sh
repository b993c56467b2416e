#!/usr/bin/env bash
# The batch job on two GPUs, each held to a 32 GB card's usable 31 GiB, then the same clips on one
# GPU: scaling efficiency, GPU busy time, placement (bench/RESULTS.md, "Two GPUs at 32 GB").
#
#   [CLIPS=8] bash bench/gpu_two.sh OUT_DIR [STEPS] [RUNS]   RUNS: "two one" (default); "free": one GPU uncapped
#
# Full-size random weights in the real layout (bench/write_random_ckpt.py); CLIPS clips of 49 frames
# at 480x720: half with mask files, half with clicks through SAM2 hiera-large (random weights) on the
# same GPUs (sam2.placement=auto -> shared). Caps: inpainting actor INPAINT_CAP_GB (26) + SAM2
# actor SAM2_CAP_GB (5) = 31 GiB on the GPU that holds both. `nvidia-smi dmon` samples every GPU
# each second into OUT_DIR/dmon_<run>.txt. bench/two_gpu_report.py turns it all into the figures.
set -uo pipefail
out=${1:?usage: bench/gpu_two.sh OUT_DIR [STEPS] [RUNS]}
steps=${2:-10}
runs=${3:-two one}
mkdir -p "$out"
work=${WORK:-/tmp/vp-two}
ckpt=$work/ckpt
mkdir -p "$work"
model_args=(model=videopainter "model.num_inference_steps=$steps")
if [ -n "${TINY:-}" ]; then  # a dry run of this script on a CPU machine: tiny model, logical GPUs
    python -m vp_ray.ckpt tiny --root "$ckpt" > /dev/null || exit 1
    model_args+=(model.height=64 model.width=96 model.dtype=float32 model.num_cpus=1 sam2=tiny_random
                 sam2.placement=shared cluster.num_cpus=6)
    size=(96 144)
else
    [ -d "$ckpt/CogVideoX-5b-I2V" ] || python bench/write_random_ckpt.py --root "$ckpt" 2>&1 | tail -3 || exit 1
    model_args+=(sam2=large_random)
    size=(480 720)
fi
model_args+=("model.base_model_path=$ckpt/CogVideoX-5b-I2V" "model.branch_path=$ckpt/VideoPainter/checkpoints/branch"
             "model.gpu_memory_limit_gb=${INPAINT_CAP_GB:-26}" "sam2.gpu_memory_limit_gb=${SAM2_CAP_GB:-5}")

python - "$work" "${size[@]}" "${CLIPS:-8}" <<'EOF' || exit 1
import sys, pandas as pd
from pathlib import Path
from vp_ray.demo import ensure_demo_dataset
work, height, width, half = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) // 2
csv = ensure_demo_dataset(work / "demo", num_clips=half, num_frames=49, height=height, width=width)
rows = pd.read_csv(csv)
for col in ("video_path", "mask_path", "ground_truth_path"):
    rows[col] = [str(work / "demo" / p) for p in rows[col]]
clicks = [{"clip_id": f"click{i}", "video_path": rows.video_path[i], "prompt": "an empty street",
           "points": f"[[{width // 2}, {height // 2}, 1]]"} for i in range(half)]
pd.concat([rows, pd.DataFrame(clicks)]).to_csv(work / "clips.csv", index=False)
EOF

run() {  # name, extra overrides...
    local name=$1; shift
    rm -rf "$work/$name"
    nvidia-smi dmon -s um -d 1 -o T > "$out/dmon_$name.txt" 2>/dev/null &
    local dmon=$!
    local start=$(date +%s.%N)
    python launch.py dataset=csv "dataset.path=$work/clips.csv" "output_dir=$work/$name" \
        cluster.sample_every_s=2 "${model_args[@]}" "$@" > "$out/$name.log" 2>&1
    echo "exit $? wall $(python -c "print(round($(date +%s.%N) - $start, 1))") s" >> "$out/$name.log"
    kill $dmon 2>/dev/null
    cp "$work/$name/manifest.parquet" "$out/manifest_$name.parquet"
    cp "$work/$name/failures.parquet" "$out/failures_$name.parquet"
    cp "$work/$name/run_samples.csv" "$out/samples_$name.csv"
    tail -22 "$out/$name.log"
}

for name in $runs; do
    case $name in
        two) run two cluster.num_gpus=2 ;;
        one) run one cluster.num_gpus=1 ;;
        free) run free cluster.num_gpus=1 model.gpu_memory_limit_gb=null sam2.gpu_memory_limit_gb=null ;;
    esac
done
python bench/two_gpu_report.py "$out" | tee "$out/report.txt"
