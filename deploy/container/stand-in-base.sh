#!/usr/bin/env bash
# Make a stand-in for the Dockerfile's base image when no image registry is reachable:
# a minimal Debian bookworm root filesystem (Python 3.11, pip, venv, CA certificates) built with
# debootstrap from the Debian archive, imported into the given containers storage under the tag
# the Dockerfile's FROM names. The rootfs tarball is cached, so only the first run takes ~1 min.
#
# Usage: stand-in-base.sh <cache-dir> <image-tag> [podman storage options...]
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 <cache-dir> <image-tag> [podman storage options...]" >&2
  exit 2
fi
cache_dir=$1
tag=$2
shift 2
storage_opts=("$@")

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
tarball="$cache_dir/stand-in-base-bookworm.tar"

mkdir -p "$cache_dir"
if [ ! -s "$tarball" ]; then
  rootfs=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
  chmod 755 "$rootfs" # mktemp makes it 0700, which would lock non-root users out of the image's /
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap: building a bookworm minbase rootfs (one-off, ~1 min)" >&2
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 || {
    tail -n 20 "$cache_dir/debootstrap.log" >&2
    exit 1
  }
  # Like the official python images: `python` is on PATH as well as `python3`.
  ln -sf python3 "$rootfs/usr/bin/python"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi

if podman "${storage_opts[@]}" image exists "$tag"; then
  exit 0
fi
podman "${storage_opts[@]}" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  "$tarball" "$tag" >/dev/null
echo "imported stand-in base as $tag" >&2
