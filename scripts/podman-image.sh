#!/usr/bin/env bash
# The container tests' image: a minimal Debian rootfs built from Debian's
# packages with mmdebstrap (no image registry is reachable), cached as
# .cache/podman/rootfs.tar, imported into podman as
# localhost/stagegate-test:bookworm when podman does not have it. Run by
# scripts/test.sh before the tests, so that podman's first use (which also
# mounts its storage directory onto itself, for good) is not inside a test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
image=localhost/stagegate-test:bookworm
podman=(podman --runtime runc --cgroup-manager cgroupfs)
"${podman[@]}" image exists "$image" && exit 0
tar=.cache/podman/rootfs.tar
if [[ ! -f "$tar" ]]; then
  rm -rf "$tar" "$tar.tmp"
  echo "test: building the container image with mmdebstrap (cached in $tar)" >&2
  mkdir -p .cache/podman
  mmdebstrap --quiet --variant=minbase --include=procps --format=tar bookworm "$tar.tmp"
  mv "$tar.tmp" "$tar"
fi
"${podman[@]}" import --quiet "$tar" "$image" >/dev/null
