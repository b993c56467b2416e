#!/usr/bin/env bash
# On the GPU machine: the attention kernels (FlashAttention-4 where it imports), the step (eager,
# compiled) and the VAE/T5 work around the loop (bench/attention_kernels.py, bench_videopainter.py,
# vae_probe.py).
#
#   bash bench/gpu_probes.sh OUT
#
# FlashAttention-4's packages unpacked (flash-attn-4 4.0.0b36, nvidia-cutlass-dsl 4.8.1 with its cu13
# libraries, quack-kernels, apache-tvm-ffi, torch-c-dlpack-ext: 257 MB, 68 MB as tar.xz) are larger
# than one call may carry beside the repository, so the tarball travels in two parts, .fa4a/ and
# .fa4b/ (ignored), in two calls made one right after the other: the first copies its part to /tmp
# (`cp .fa4a/fa4part-aa /tmp/`; a carried folder is gone at the next call, /tmp stays while the
# machine does). .fa4b/small.tar.xz holds diffusers 0.42.1, hydra-core, omegaconf, antlr4.
set -uo pipefail
OUT=${1:?usage: gpu_probes.sh OUT}
mkdir -p .fa4site /tmp/site
cat /tmp/fa4part-aa .fa4b/fa4part-ab | xz -d | tar -x -C .fa4site || exit 1
tar -xJf .fa4b/small.tar.xz -C /tmp/site || exit 1
export PYTHONPATH=/tmp/site:$PWD/.fa4site:$PWD/.fa4site/nvidia_cutlass_dsl/dsl_packages:$PWD
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
python3 -c "import torch, diffusers; print(torch.__version__, diffusers.__version__)" | tee -a "$OUT/gpu.txt"
timeout 150 python3 bench/attention_kernels.py --out "$OUT/attention.json" > "$OUT/attention.log" 2>&1
tail -n 30 "$OUT/attention.log"
timeout 330 python3 bench/bench_videopainter.py --steps 10 --stock-steps 10 --modes resident+tiling,resident+tiling+compile \
    --out "$OUT/speed.json" > "$OUT/speed.log" 2>&1
tail -n 14 "$OUT/speed.log"
timeout 110 python3 bench/vae_probe.py --out "$OUT/vae_probe.json" > "$OUT/vae_probe.log" 2>&1
grep -E "^(untiled|1x2|2x2|3x3) |t5 resident" "$OUT/vae_probe.log"
