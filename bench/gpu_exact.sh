#!/usr/bin/env bash
# A whole clip of the batch job against stock diffusers' CogVideoX-5b-I2V, in one GPU call
# (bench/RESULTS.md, "The exact clip ratio"):
#
#   [CLIPS=4] bash bench/gpu_exact.sh OUT [STEPS]
#
# 1. Stock diffusers' I2V end to end on one 49-frame 480x720 clip at STEPS steps (default 50): T5 on
#    the prompt, the image encode, the loop, the decode to frames; everything resident, VAE untiled
#    (diffusers' defaults), after a one-step warm-up call (bench_videopainter.py --modes none).
# 2. The batch job on one GPU under a 32 GB card's caps (inpainting actor 26 GiB + SAM2 5 GiB beside
#    it), the default config at STEPS steps, CLIPS clips (default 4): bench/gpu_two.sh's `one` run.
#
# Prints `exact clip ratio vs stock: 0.NN` (the batch job's steady-state seconds per clip over stock's
# seconds per clip), the seconds per clip of both, the GPU's idle time between clips, the work outside
# the loop per clip, and the first clip's extra time (compile, warm-up). Machine: one CUDA GPU with at
# least 40 GiB (H100 or H200), 16 cores; packages beside torch: diffusers, hydra-core, omegaconf, Ray,
# PyAV, sam2 (carried: `bash bench/carry_site.sh` here, .whl/ carried). Writes OUT/exact_report.txt
# (the header: command, machine, time; and the figures), OUT/stock.{json,log}, OUT/gpu.txt and
# gpu_two.sh's files of the `one` run. Wall time at 50 steps on an H100 (estimated from the runs in
# bench/RESULTS.md): stock about 2 min; the batch job about 1.5 min of start and finish, plus about
# 1.4 min per clip with compiled blocks (1.7 eager) and 20 s of compile; the random checkpoint (30 s)
# once per machine. So about 10 min with CLIPS=4, 8.5 with CLIPS=3 (the least that gives a steady
# state). LIMIT_S (default 560) bounds the whole: the batch job is stopped with SIGTERM when it would
# run past it, and the figures come from the clips done by then (`stopped at the limit` says so).
#
# OVERRIDES="key=value ..." goes to the batch job (gpu_two.sh): e.g. OVERRIDES="model.compile_vae=true"
# for the steady state of a run long enough for auto to compile the VAE (its compile, about 2.5 min on
# an H100, then lands in the first clip: with CLIPS=4 the call outlasts 10 minutes unless inductor's
# cache on the machine already holds the graphs from an earlier call). The report's header names it.
#
# TINY=1 runs the script's whole path on a CPU machine: tiny models, a logical GPU, no dmon.
USAGE="[CLIPS=4] [OVERRIDES=...] bash bench/gpu_exact.sh OUT [STEPS]"
source "$(dirname "$0")/_common.sh"
parse_out "$@"
steps=${2:-50}
clips=${CLIPS:-4}
[[ $steps =~ ^[1-9][0-9]*$ ]] || refuse "STEPS must be a positive integer, not '$steps'"
[[ $clips =~ ^[1-9][0-9]*$ ]] || refuse "CLIPS must be a positive integer, not '$clips'"
(( clips >= 3 )) || refuse "CLIPS=$clips gives no steady state (the first clip is left out, 2 intervals needed): use CLIPS >= 3"
tiny=()
if [ -n "${TINY:-}" ]; then
    tiny=(--tiny)
else
    require_cuda
fi
carried_site torch diffusers hydra omegaconf ray av sam2
make_out
began=$(date +%s)
fail() {  # after something was measured: exit status 1, what is in OUT stays
    echo "$(basename "$SCRIPT"): $*" | tee -a "$OUT/exact_report.txt" >&2
    exit 1
}
report=$OUT/exact_report.txt
{
    echo "command: CLIPS=$clips${TINY:+ TINY=$TINY}${OVERRIDES:+ OVERRIDES=\"$OVERRIDES\"} bash bench/gpu_exact.sh $*"
    echo "time: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    gpus=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2> /dev/null | paste -sd ';')
    echo "machine: $(hostname), $(nproc) cores, ${gpus:-no GPU (TINY)}"
} | tee "$report"
[ -n "${TINY:-}" ] || gpu_info

echo "stock diffusers I2V, end to end, $steps steps ..."
timeout 400 "$PYTHON" bench/bench_videopainter.py "${tiny[@]}" --steps "$steps" --stock-steps "$steps" --modes none \
    --out "$OUT/stock.json" > "$OUT/stock.log" 2>&1 || { tail -n 5 "$OUT/stock.log"; fail "the stock run failed (see $OUT/stock.log)"; }
grep "^stock end to end" "$OUT/stock.log" | tee -a "$report"

left=$(( ${LIMIT_S:-560} - ($(date +%s) - began) - 60 ))   # 45 s for a stopped run to end, 15 for the report
(( left > 60 )) || fail "no time left for the batch job within LIMIT_S=${LIMIT_S:-560} s"
echo "the batch job, one GPU, $clips clips at $steps steps (stopped after $left s if still running) ..."
RUN_TIMEOUT_S=$left CLIPS=$clips bash bench/gpu_two.sh "$OUT" "$steps" one > "$OUT/two.log" 2>&1
status=$?
grep -qE "^exit (124|137|143) wall" "$OUT/one.log" 2> /dev/null && echo "stopped at the limit: the figures are those of the clips done by then" | tee -a "$report"
grep -E "GPU idle between clips|last step -> next|outside the loop|steady state|FAILED|placement check|memory plan|denoising step|^stock diffusers|^batch job|^exact clip ratio" \
    "$OUT/two.log" | tee -a "$report"
echo "wall $(( $(date +%s) - began )) s, gpu_two.sh exit $status" | tee -a "$report"
exit "$status"
