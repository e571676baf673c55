#!/usr/bin/env bash
# Idempotent setup: apt packages, npm packages, generated code, native builds
# and a working criu >= 4.2. Quiet when everything is already in place.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { echo "setup: $*" >&2; }

# 1. Debian packages: libzmq + protobuf-c for the compiled hook (jansson, and
#    libcrypto at run time, for its restore --set), a C toolchain
#    for hook/addon/workload, iproute2/util-linux for namespaces in tests.
# chromium: the tests open the trace HTML page in it (headless);
# mpich: the MPI recipe and its test; faketime: the clock-jump test;
# slurm-wlm, munge: the Slurm recipe and its test (a single-node cluster the test starts).
apt_pkgs=(iptables podman runc mmdebstrap libzmq3-dev libsodium-dev libjansson-dev libssl3 libprotobuf-c-dev protobuf-c-compiler pkg-config g++ make python3 util-linux iproute2 procps ca-certificates chromium mpich libmpich-dev faketime slurm-wlm munge)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. npm packages, reinstalled only when the lock file changed.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f node_modules/.stagegate-lock || "$(cat node_modules/.stagegate-lock)" != "$lock_sum" ]]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_sum" > node_modules/.stagegate-lock
fi

# 3. Generated code and native builds (each step skips itself when up to date).
bash scripts/build.sh

# 4. criu >= 4.2.
bash scripts/install-criu.sh

