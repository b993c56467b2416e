#!/usr/bin/env bash
# The single-video command on one GPU with full-size random weights, and Ray's start-up cost for
# comparison (bench/RESULTS.md, "Single video").
#
#   bash bench/gpu_single.sh OUT [STEPS]
#
# Machine: one CUDA GPU with at least 40 GiB (H100 or H200). Packages beside torch: diffusers,
# hydra-core, omegaconf, Ray, PyAV, sam2 (carried: `bash bench/carry_site.sh` here, .whl/ carried).
# STEPS defaults to 10. Runs `python -m vp_ray.tools.single` on one 49-frame 480x720 clip with a click,
# with --mask_only and in full; writes OUT/{mask_only,full}.log (exit status, wall time, files) and
# OUT/ray_start.log. About 3 minutes.
USAGE="bash bench/gpu_single.sh OUT [STEPS]"
source "$(dirname "$0")/_common.sh"
parse_out "$@"
steps=${2:-10}
[[ $steps =~ ^[1-9][0-9]*$ ]] || refuse "STEPS must be a positive integer, not '$steps'"
require_cuda
carried_site torch diffusers hydra omegaconf ray av sam2
make_out
gpu_info
random_ckpt
work=/tmp/vp-single
mkdir -p "$work"
"$PYTHON" -c "from vp_ray.clip.demo import ensure_demo_dataset; ensure_demo_dataset('$work/demo', num_clips=1, num_frames=49, height=480, width=720)" || exit 1
video=$work/demo/demo00_landscape/video.mp4
args=(--video "$video" --click_x 300 --click_y 200 --prompt "an empty street"
      --num_inference_steps "$steps" --model videopainter "model.base_model_path=$CKPT/CogVideoX-5b-I2V"
      "model.branch_path=$CKPT/VideoPainter/checkpoints/branch" sam2=large_random)

for mode in mask_only full; do
    flag=(); [ "$mode" = mask_only ] && flag=(--mask_only)
    rm -rf "${work:?}/$mode"
    start=$(date +%s%N)
    "$PYTHON" -m vp_ray.tools.single "${args[@]}" "${flag[@]}" --output_dir "$work/$mode" > "$OUT/$mode.log" 2>&1
    echo "exit $? wall $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee -a "$OUT/$mode.log"
    ls -l "$work/$mode" >> "$OUT/$mode.log"
done

# What a local Ray would add before the first stage could start: ray.init and one actor.
"$PYTHON" - > "$OUT/ray_start.log" 2>&1 <<'PY'
import time
start = time.perf_counter()
import ray
ray.init(include_dashboard=False, log_to_driver=False)
initialised = time.perf_counter()

@ray.remote(num_gpus=1)
class Ping:
    def ping(self):
        return 1

ray.get(Ping.remote().ping.remote())
done = time.perf_counter()
print(f"import+ray.init {initialised - start:.1f} s, first GPU actor answered after {done - start:.1f} s")
PY
cat "$OUT/ray_start.log"
