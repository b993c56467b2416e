#!/usr/bin/env bash
# The batch job with each inpainting actor held to a 32 GB card's usable 31 GiB, on two GPUs and
# on one: scaling efficiency, GPU busy time, placement, memory plan (bench/RESULTS.md, "A 32 GB
# card's memory on one GPU", "The 32 GB plan in the batch job", "Two GPUs at 32 GB each").
#
#   [CLIPS=8] bash bench/gpu_two.sh OUT [STEPS] [RUNS]
#
# RUNS (default "two one"): two = 2 GPUs, one = 1 GPU, free = 1 GPU without caps, seq = 1 GPU with
# one clip at a time per actor (cluster.overlap_clips=false: the GPU's idle time between clips without
# the overlap, to compare with `one`). Machine: as many
# CUDA GPUs as the runs ask (2 for "two"), each with at least 40 GiB; 16+ cores. Packages beside
# torch: diffusers, hydra-core, omegaconf, Ray, PyAV, sam2 (carried: `bash bench/carry_site.sh`
# here, .whl/ carried).
#
# Full-size random weights in the real layout (bench/write_random_ckpt.py, at $CKPT); CLIPS clips of
# 49 frames at 480x720: (CLIPS + 1) / 2 with mask files, the rest with clicks through SAM2
# hiera-large (random weights) on the same GPUs (sam2.placement=auto -> shared). Caps: inpainting
# actor INPAINT_CAP_GB (26) + SAM2 actor SAM2_CAP_GB (5) = 31 GiB on the GPU that holds both. The
# steady state leaves out each GPU's first clip, so CLIPS must give every GPU at least 3 clips
# (2 intervals): CLIPS >= 3 for one GPU, >= 6 for two. `nvidia-smi dmon` samples every GPU each
# second. Writes per run OUT/{<run>.log, manifest_<run>.parquet, failures_<run>.parquet,
# samples_<run>.csv, dmon_<run>.txt} and OUT/report.txt (bench/two_gpu_report.py). At 10 steps and
# 8 clips a run takes about 5 minutes; at 50 steps and 4 clips about 8.
#
# RUN_TIMEOUT_S=N stops each run's launch.py with SIGTERM after N seconds (as Ctrl-C: the clips
# done so far are in its manifest; killed 45 s later if it has not ended), so that a caller with a
# fixed time keeps what was measured.
#
# OVERRIDES="key=value ..." adds config overrides to every run (after the script's own, so they win),
# e.g. OVERRIDES="model.compile_vae=true" to measure a long run's steady state with a short one.
#
# TINY=1 runs the script's whole path on a CPU machine: the tiny model, logical GPUs, no dmon.
USAGE="[CLIPS=8] [OVERRIDES=...] bash bench/gpu_two.sh OUT [STEPS] [RUNS]"
source "$(dirname "$0")/_common.sh"
parse_out "$@"
steps=${2:-10}
runs=${3:-two one}
clips=${CLIPS:-8}
[[ $steps =~ ^[1-9][0-9]*$ ]] || refuse "STEPS must be a positive integer, not '$steps'"
[[ $clips =~ ^[1-9][0-9]*$ ]] || refuse "CLIPS must be a positive integer, not '$clips'"
for run in $runs; do
    case $run in
        two) gpus=2 ;;
        one|free|seq) gpus=1 ;;
        *) refuse "unknown run '$run' in RUNS: expected two, one, free or seq" ;;
    esac
    (( clips >= 3 * gpus )) || refuse "CLIPS=$clips gives run '$run' a steady state of fewer than 2 intervals per GPU (its first clip is left out): use CLIPS >= $(( 3 * gpus ))"
done

work=${WORK:-/tmp/vp-two}
model_args=(model=videopainter "model.num_inference_steps=$steps")
if [ -n "${TINY:-}" ]; then
    carried_site torch diffusers hydra omegaconf ray av sam2
    make_out
    mkdir -p "$work"
    ckpt=$work/ckpt
    "$PYTHON" -m vp_ray.tools.ckpt tiny --root "$ckpt" > /dev/null || exit 1
    model_args+=(model.height=64 model.width=96 model.dtype=float32 model.num_cpus=1 sam2=tiny_random
                 sam2.placement=shared cluster.num_cpus=6)
    size=(96 144)
else
    require_cuda
    carried_site torch diffusers hydra omegaconf ray av sam2
    make_out
    mkdir -p "$work"
    gpu_info
    random_ckpt
    ckpt=$CKPT
    model_args+=(sam2=large_random)
    size=(480 720)
fi
model_args+=("model.base_model_path=$ckpt/CogVideoX-5b-I2V" "model.branch_path=$ckpt/VideoPainter/checkpoints/branch"
             "model.gpu_memory_limit_gb=${INPAINT_CAP_GB:-26}" "sam2.gpu_memory_limit_gb=${SAM2_CAP_GB:-5}")
read -ra overrides <<< "${OVERRIDES:-}"
model_args+=("${overrides[@]}")

"$PYTHON" - "$work" "${size[@]}" "$clips" <<'EOF' || exit 1
import sys, pandas as pd
from pathlib import Path
from vp_ray.clip.demo import ensure_demo_dataset
work, height, width, clips = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with_masks, with_clicks = (clips + 1) // 2, clips // 2
demo = work / "demo"
rows = pd.read_csv(ensure_demo_dataset(demo, num_clips=with_masks, num_frames=49, height=height, width=width))
for col in ("video_path", "mask_path", "ground_truth_path"):
    rows[col] = [str(demo / p) for p in rows[col]]
clicks = [{"clip_id": f"click{i}", "video_path": rows.video_path[i], "prompt": "an empty street",
           "points": f"[[{width // 2}, {height // 2}, 1]]"} for i in range(with_clicks)]
table = pd.concat([rows, pd.DataFrame(clicks)])
assert len(table) == clips, (len(table), clips)
table.to_csv(work / "clips.csv", index=False)
EOF

run() {  # name, extra overrides...
    local name=$1; shift
    rm -rf "${work:?}/$name"
    local dmon=""
    if [ -z "${TINY:-}" ]; then
        nvidia-smi dmon -s um -d 1 -o T > "$OUT/dmon_$name.txt" 2> /dev/null &
        dmon=$!
    fi
    local start limit=()
    [ -n "${RUN_TIMEOUT_S:-}" ] && limit=(timeout --foreground -s TERM -k 45 "$RUN_TIMEOUT_S")   # launch.py alone: Ray's processes end with it
    start=$(date +%s.%N)
    "${limit[@]}" "$PYTHON" launch.py dataset=csv "dataset.path=$work/clips.csv" "output_dir=$work/$name" \
        cluster.sample_every_s=2 "${model_args[@]}" "$@" > "$OUT/$name.log" 2>&1
    echo "exit $? wall $("$PYTHON" -c "print(round($(date +%s.%N) - $start, 1))") s" >> "$OUT/$name.log"
    [ -n "$dmon" ] && kill "$dmon" 2> /dev/null
    cp "$work/$name/manifest.parquet" "$OUT/manifest_$name.parquet"
    cp "$work/$name/failures.parquet" "$OUT/failures_$name.parquet"
    cp "$work/$name/run_samples.csv" "$OUT/samples_$name.csv"
    tail -n 24 "$OUT/$name.log"
}

for name in $runs; do
    case $name in
        two) run two cluster.num_gpus=2 ;;
        one) run one cluster.num_gpus=1 ;;
        free) run free cluster.num_gpus=1 model.gpu_memory_limit_gb=null sam2.gpu_memory_limit_gb=null ;;
        seq) run seq cluster.num_gpus=1 cluster.overlap_clips=false ;;
    esac
done
"$PYTHON" bench/two_gpu_report.py "$OUT" | tee "$OUT/report.txt"
