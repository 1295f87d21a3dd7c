#!/usr/bin/env bash
# A stand-in for python:3.11-slim where no image registry can be reached.
#
#   bash scripts/base-image.sh [NAME]          default NAME: stamen-base:bookworm
#
# Debian bookworm (debootstrap --variant=minbase, from Debian's package mirror) with
# Debian's python3 (3.11), its venv module and openssl: what the Dockerfile needs of a
# base. Imported as NAME with `docker import`; kept, so a second call does nothing. Needs
# root, debootstrap and a Docker engine; debootstrap's log goes to build/base-image.log.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-stamen-base:bookworm}

if docker image inspect "$name" >/dev/null 2>&1; then
    echo "base: using the stand-in $name built before"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    echo "$0: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 2
fi
mkdir -p build
root=$(mktemp -d /tmp/stamen-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base: building the stand-in $name with debootstrap (takes minutes; log: build/base-image.log)"
if ! debootstrap --variant=minbase --include=python3,python3-venv,openssl \
    bookworm "$root" >build/base-image.log 2>&1; then
    echo "$0: debootstrap failed; see build/base-image.log" >&2
    exit 1
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' \
    - "$name" >/dev/null
echo "base: built $name"
