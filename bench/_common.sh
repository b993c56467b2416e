# What the bench's shell scripts share. Each one starts with
#
#   USAGE="bench/<script>.sh OUT [...]"
#   source "$(dirname "$0")/_common.sh"
#   parse_out "$@"                       # -h/--help prints the script's header; OUT made absolute
#   ... checks (refuse) ...
#   make_out                             # OUT created once nothing refused
#
# and then runs from the repository root with the repository on PYTHONPATH. Functions:
#   refuse MESSAGE          one line on stderr, exit status 2 (nothing was measured, nothing written)
#   require_cuda            refuse without an NVIDIA GPU
#   carried_site MODULE...  make the modules importable: as installed, else from the carried
#                           .whl/site312.tar.xz (bash bench/carry_site.sh), else refuse naming them
#   gpu_info                the GPU, its driver and the package versions into OUT/gpu.txt
#   random_ckpt             the full-size random checkpoint tree at $CKPT, written once per machine
# Python is $PYTHON (python3 by default: on the GPU machines, the one that holds torch).
set -uo pipefail
CALLER_DIR=$PWD
SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# NVLink multicast stays off on shared multi-GPU hosts (NCCL, PyTorch, NVSHMEM).
export NCCL_NVLS_ENABLE=0 NVSHMEM_DISABLE_NVLS=1 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
SITE_TARBALL=.whl/site312.tar.xz
SITE_DIR=${SITE_DIR:-/tmp/site}
# One random checkpoint tree (about 22 GB) for every script on a machine.
CKPT=${CKPT:-/tmp/vp-ckpt}

refuse() {
    echo "$(basename "$SCRIPT"): $*" >&2
    exit 2
}

parse_out() {
    case "${1:-}" in
        -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$SCRIPT"; exit 0 ;;
        ""|-*) refuse "usage: ${USAGE:-$(basename "$SCRIPT") OUT}" ;;
    esac
    case $1 in /*) OUT=$1 ;; *) OUT=$CALLER_DIR/$1 ;; esac
}

make_out() {
    mkdir -p "$OUT" || refuse "cannot create $OUT"
}

require_cuda() {
    command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1 || refuse "needs a CUDA GPU (nvidia-smi finds none)"
}

missing_modules() {
    "$PYTHON" -c 'import importlib.util, sys; print(*(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' "$@"
}

carried_site() {
    command -v "$PYTHON" > /dev/null || refuse "needs $PYTHON on PATH (or PYTHON=...)"
    local missing
    missing=$(missing_modules "$@")
    [ -z "$missing" ] && return 0
    [[ " $missing " == *" torch "* ]] && refuse "needs torch: run with the Python that holds it (PYTHON=...; $PYTHON does not)"
    [ -f "$SITE_TARBALL" ] || refuse "missing Python packages: $missing; make them here with \`bash bench/carry_site.sh\` and carry .whl/"
    local stamp
    stamp=$(stat -c '%s %Y' "$SITE_TARBALL")
    if [ "$(cat "$SITE_DIR/.unpacked" 2> /dev/null)" != "$stamp" ]; then
        mkdir -p "$SITE_DIR" && tar -xJf "$SITE_TARBALL" -C "$SITE_DIR" && echo "$stamp" > "$SITE_DIR/.unpacked" \
            || refuse "could not unpack $SITE_TARBALL into $SITE_DIR"
    fi
    export PYTHONPATH="$SITE_DIR:$PYTHONPATH"
    missing=$(missing_modules "$@")
    [ -z "$missing" ] || refuse "missing Python packages: $missing, also after unpacking $SITE_TARBALL (make it again with \`bash bench/carry_site.sh\`)"
}

gpu_info() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
    "$PYTHON" - >> "$OUT/gpu.txt" 2>&1 <<'EOF'
import importlib
versions = []
for name in ("torch", "diffusers", "transformers", "ray", "torchao"):
    try:
        versions.append(f"{name} {importlib.import_module(name).__version__}")
    except ImportError:
        pass
print(", ".join(versions))
EOF
}

random_ckpt() {
    "$PYTHON" bench/write_random_ckpt.py --root "$CKPT" > "$OUT/ckpt.log" 2>&1 || {
        tail -n 3 "$OUT/ckpt.log" >&2
        echo "$(basename "$SCRIPT"): could not write the random checkpoint tree at $CKPT (see $OUT/ckpt.log)" >&2
        exit 1
    }
}
