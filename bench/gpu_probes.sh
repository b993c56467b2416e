#!/usr/bin/env bash
# The attention kernels, the denoising step (eager and compiled) and the VAE/T5 work around the
# loop, on one GPU (bench/RESULTS.md, "Third speed run").
#
#   bash bench/gpu_probes.sh OUT
#
# Machine: one CUDA GPU (H100 or H200). Packages beside torch: diffusers, hydra-core, omegaconf
# (carried: `bash bench/carry_site.sh` here, .whl/ carried). Runs bench/attention_kernels.py,
# bench_videopainter.py --steps 10 --modes resident+tiling,resident+tiling+compile and vae_probe.py;
# writes OUT/gpu.txt and OUT/{attention,speed,vae_probe}.{json,log}. FlashAttention-4 is tried where
# it imports; it is not carried (RESULTS.md: its wheels lack `cutlass.cute`). About 3.5 minutes.
USAGE="bash bench/gpu_probes.sh OUT"
source "$(dirname "$0")/_common.sh"
parse_out "$@"
require_cuda
carried_site torch diffusers hydra omegaconf
make_out
gpu_info
timeout 150 "$PYTHON" bench/attention_kernels.py --out "$OUT/attention.json" > "$OUT/attention.log" 2>&1
tail -n 30 "$OUT/attention.log"
timeout 330 "$PYTHON" bench/bench_videopainter.py --steps 10 --stock-steps 10 \
    --modes resident+tiling,resident+tiling+compile --out "$OUT/speed.json" > "$OUT/speed.log" 2>&1
tail -n 14 "$OUT/speed.log"
timeout 110 "$PYTHON" bench/vae_probe.py --out "$OUT/vae_probe.json" > "$OUT/vae_probe.log" 2>&1
grep -E "^(untiled|1x2|2x2|3x3) |t5 resident" "$OUT/vae_probe.log"
