#!/usr/bin/env bash
# Make a stand-in for the Dockerfile's base image when no image registry is reachable:
# a minimal Debian bookworm root filesystem (Python 3.11, pip, venv, CA certificates), imported
# into the given containers storage under the tag the Dockerfile's FROM names. On a Debian
# bookworm host that has those packages, the files come from the host's own installed packages
# (host_files.py: the same packages debootstrap's minbase would install, in seconds); elsewhere,
# or with STAND_IN_BASE=debootstrap, debootstrap builds it from the Debian archive (~1 min,
# minutes on a busy machine). The rootfs tarball is cached in <cache-dir>.
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

packages=python3,python3-pip,python3-venv,ca-certificates
here=$(cd "$(dirname "$0")" && pwd)

# Whether to take the rootfs from this host: a Debian bookworm that has the packages installed.
# $1: where to write the list of their files (host_files.py says what is missing, if anything).
host_has_the_packages() {
  [ "${STAND_IN_BASE:-host}" = host ] || return 1
  # shellcheck disable=SC1091 # the host's, not ours
  [ "$(. /etc/os-release && echo "${ID:-}-${VERSION_CODENAME:-}")" = debian-bookworm ] || return 1
  python3 "$here/host_files.py" "$packages" >"$1"
}

# Copy the listed files of the host into $1 and do what the packages' maintainer scripts do on a
# real install (base-passwd, passwd, ca-certificates, libc-bin); the bundle is the host's, which
# the image build mounts anyway.
copy_from_host() {
  local rootfs=$1 list=$2
  tar -C / --null --no-recursion -T "$list" -cf - | tar -C "$rootfs" -xf -
  for dir in bin sbin lib lib64; do ln -s "usr/$dir" "$rootfs/$dir"; done
  cp /usr/share/base-passwd/passwd.master "$rootfs/etc/passwd"
  cp /usr/share/base-passwd/group.master "$rootfs/etc/group"
  awk -F: '{print $1 ":*:19000:0:99999:7:::"}' "$rootfs/etc/passwd" >"$rootfs/etc/shadow"
  awk -F: '{print $1 ":*::"}' "$rootfs/etc/group" >"$rootfs/etc/gshadow"
  chgrp shadow "$rootfs/etc/shadow" "$rootfs/etc/gshadow"
  chmod 640 "$rootfs/etc/shadow" "$rootfs/etc/gshadow"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  ldconfig -r "$rootfs"
  echo "stand-in base: a bookworm rootfs from this host's packages" >&2
}

mkdir -p "$cache_dir"
if [ ! -s "$tarball" ]; then
  rootfs=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
  chmod 755 "$rootfs" # mktemp makes it 0700, which would lock non-root users out of the image's /
  list=$(mktemp "$cache_dir/files.XXXXXX")
  trap 'rm -rf "$rootfs" "$list"' EXIT
  if host_has_the_packages "$list"; then
    copy_from_host "$rootfs" "$list"
  else
    echo "debootstrap: building a bookworm minbase rootfs (one-off, ~1 min)" >&2
    debootstrap --variant=minbase --include="$packages" \
      bookworm "$rootfs" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 || {
      tail -n 20 "$cache_dir/debootstrap.log" >&2
      exit 1
    }
  fi
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
