#!/usr/bin/env bash
# Packages the GPU machine lacks, as one xz tarball of an unpacked site-packages for Python 3.12:
# .whl/site312.tar.xz (~41 MB; the working tree travels too, 64 MiB in all).
#
#   bash bench/carry_site.sh          # here, in the repo root, with the project's venv active
#
# Needs: torch importable by `python3` (sam2's wheel is built against it: `. .venv/bin/activate`
# first), pip, unzip, strip, xz and a package index. The GPU scripts unpack the tarball themselves
# (bench/_common.sh, carried_site) when .whl/ is carried; by hand, first in each call:
#   mkdir -p /tmp/site && tar -xJf .whl/site312.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:$PWD
#
# Zipped wheels of diffusers, Ray, PyAV, Hydra, torchao and sam2 come to ~125 MB; unpacked, with Ray's Java,
# RLlib, Serve, Tune, Train, LLM and dashboard-client parts removed and the shared libraries
# stripped of symbols, xz brings them to ~41 MB. antlr4 and sam2 have no wheels on PyPI: built here
# (sam2 without its CUDA extension, which it only uses for mask post-processing).
USAGE="bash bench/carry_site.sh"
source "$(dirname "$0")/_common.sh"
case "${1:-}" in -h|--help) parse_out "$@" ;; "") ;; *) refuse "takes no arguments (usage: $USAGE)" ;; esac
python3 -c "import torch" 2> /dev/null \
    || refuse "needs torch importable by python3 (sam2 builds against it): activate the project's venv first (. .venv/bin/activate)"
for tool in unzip strip xz; do
    command -v $tool > /dev/null || refuse "needs $tool on PATH"
done
set -e
wheels=$(mktemp -d)
site=$(mktemp -d)
trap 'rm -rf "$wheels" "$site"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$wheels" \
    diffusers==0.42.1 importlib_metadata zipp hydra-core==1.3.8 omegaconf==2.3.1 av==18.1.0 ray==2.60.0 \
    jsonschema referencing jsonschema-specifications rpds-py iopath portalocker torchao==0.18.0
python3 -m pip wheel -q --no-deps --no-build-isolation antlr4-python3-runtime==4.9.3 -w "$wheels"
SAM2_BUILD_CUDA=0 python3 -m pip wheel -q --no-deps --no-build-isolation sam2==1.1.0 -w "$wheels"
for wheel in "$wheels"/*.whl; do unzip -q -o "$wheel" -d "$site"; done
rm -rf "$site"/ray/{jars,rllib,serve,tune,train,llm,dashboard/client/build}
find "$site" \( -name '*.so*' -o -name gcs_server -o -name raylet \) -type f -exec strip --strip-unneeded {} + 2> /dev/null || true
mkdir -p .whl
tar -C "$site" -cf - . | xz -T0 -9 > .whl/site312.tar.xz
ls -l .whl/site312.tar.xz
