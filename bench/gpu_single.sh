#!/usr/bin/env bash
# The single-video command on one GPU with full-size random weights, and Ray's start-up cost
# for comparison (bench/RESULTS.md, "single video").
#
#   bash bench/gpu_single.sh OUT_DIR [STEPS]
set -uo pipefail
out=${1:?usage: bench/gpu_single.sh OUT_DIR [STEPS]}
steps=${2:-10}
work=/tmp/vp-single
ckpt=/tmp/vp-e2e/ckpt  # shared with bench/gpu_e2e.sh
mkdir -p "$out" "$work"
python bench/write_random_ckpt.py --root "$ckpt" > "$out/ckpt.log" 2>&1 || exit 1
python -c "from vp_ray.demo import ensure_demo_dataset; ensure_demo_dataset('$work/demo', num_clips=1, num_frames=49, height=480, width=720)" || exit 1
video=$work/demo/demo00_landscape/video.mp4
args=(--video "$video" --click_x 300 --click_y 200 --prompt "an empty street"
      --num_inference_steps "$steps" --model videopainter "model.base_model_path=$ckpt/CogVideoX-5b-I2V"
      "model.branch_path=$ckpt/VideoPainter/checkpoints/branch" sam2=large_random)

for mode in mask_only full; do
    flag=(); [ "$mode" = mask_only ] && flag=(--mask_only)
    start=$(date +%s%N)
    python -m vp_ray.single "${args[@]}" "${flag[@]}" --output_dir "$work/$mode" > "$out/$mode.log" 2>&1
    echo "exit $? wall $(( ($(date +%s%N) - start) / 1000000 )) ms" >> "$out/$mode.log"
    ls -l "$work/$mode" >> "$out/$mode.log"
done

# What a local Ray would add before the first stage could start: ray.init and one actor.
python - > "$out/ray_start.log" 2>&1 <<'PY'
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
