#!/usr/bin/env bash
# Builds a Debian bookworm base image with Python 3.11 and venv from Debian's packages alone, for machines
# that reach a Debian mirror but no container registry (air-gapped builds, this project's CI kind):
#   docker/base-image.sh TAG [MIRROR]
# debootstrap's minbase variant plus python3, python3-venv, ca-certificates and passwd (for useradd),
# imported with `docker import`. Nothing is done when TAG already exists. Needs root (debootstrap).
set -euo pipefail
tag=${1:?usage: docker/base-image.sh TAG [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base-image: $tag is already built"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "base-image: debootstrap needs root: run as root, or pass a base image with Python 3.11 (BASE_IMAGE=...)" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

root=$(mktemp -d /var/tmp/cxrtl-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd bookworm "$root" "$mirror" \
    >"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; echo "base-image: debootstrap from $mirror failed" >&2; exit 1; }
rm -f "$root.log"
# What the image needs no copy of: downloaded packages, package lists, docs, man pages.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
# docker import makes an image without a config: give it the PATH and locale a Dockerfile's ENV builds on.
tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase bookworm + python3 python3-venv ca-certificates passwd" \
    - "$tag" >/dev/null
echo "base-image: built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec))"
