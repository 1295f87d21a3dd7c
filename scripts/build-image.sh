#!/usr/bin/env bash
# Build a Stamen image offline: every wheel it needs into build/wheelhouse on the host,
# then `docker build --network none` installing from there alone.
#
#   bash scripts/build-image.sh [TAG [EXTRAS]]
#     bash scripts/build-image.sh                     stamen:dev, the numpy examples
#     bash scripts/build-image.sh stamen:torch torch  + CPU torch (examples/quickstart-pytorch)
#
# Environment: PYTHON (default .venv/bin/python) runs `pip wheel` and must be Python 3.11,
# as in the image; BASE (default python:3.11-slim): when it is neither present nor
# pullable, scripts/base-image.sh builds a stand-in with debootstrap, and this says so;
# TORCH (default torch==2.13.0, the CPU wheel here) is the torch requirement for EXTRAS
# torch, e.g. a CUDA build's requirement where GPUs serve (README: "GPUs").
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-stamen:dev}
extras=${2:-}
python=${PYTHON:-.venv/bin/python}
base=${BASE:-python:3.11-slim}
torch=${TORCH:-torch==2.13.0}
standin=stamen-base:bookworm
wheels=build/wheelhouse

if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "$0: $python is not Python 3.11, the image's: its wheels would not install" >&2
    exit 2
fi
if docker image inspect "$base" >/dev/null 2>&1 || docker pull --quiet "$base" >/dev/null 2>&1; then
    echo "base: $base"
else
    echo "base: $base cannot be pulled (no registry reachable): using a stand-in"
    bash scripts/base-image.sh "$standin"
    base=$standin
fi

requirements=(. scikit-learn)
if [[ -n $extras ]]; then
    requirements=(".[$extras]" scikit-learn)
fi
if [[ ,$extras, == *,torch,* ]]; then
    requirements+=("$torch")
fi
echo "wheelhouse: ${requirements[*]} -> $wheels"
rm -rf "$wheels" && mkdir -p build
if ! "$python" -m pip wheel --wheel-dir "$wheels" "${requirements[@]}" >build/wheelhouse.log 2>&1; then
    echo "$0: pip wheel failed; see build/wheelhouse.log" >&2
    exit 1
fi

echo "image: $tag (docker build --network none)"
docker build --quiet --network none --build-arg "BASE=$base" --build-arg "EXTRAS=$extras" \
    --tag "$tag" . >/dev/null
# The install stage's image, left untagged by the classic builder, is of no further use.
docker image prune --force --filter label=org.stamen.stage=install >/dev/null
echo "image: built $tag ($(ls "$wheels" | grep -o '^torch-[^-]*' || echo 'no torch'))"
