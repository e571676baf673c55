#!/usr/bin/env bash
# Builds what is generated or compiled: protobufjs code from proto/, the C hook,
# the native addon and the demo workload. Each step runs only when its inputs
# are newer than its outputs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { echo "build: $*" >&2; }
newer() { # newer OUT IN... : true when OUT is missing or older than any IN
  local out="$1"; shift
  [[ -e "$out" ]] || return 0
  local f; for f in "$@"; do [[ "$f" -nt "$out" ]] && return 0; done
  return 1
}

gen=src/protocol/generated
if newer "$gen/stagegate.d.ts" proto/stagegate.proto; then
  say "generating protobufjs code"
  mkdir -p "$gen"
  node_modules/.bin/pbjs -t static-module -w commonjs --no-beautify --force-long -o "$gen/stagegate.js" proto/stagegate.proto
  node_modules/.bin/pbts -o "$gen/stagegate.d.ts" "$gen/stagegate.js"
fi

if newer src/images/generated/criu.d.ts proto/criu/images.proto; then
  say "generating the CRIU image decoders"
  mkdir -p src/images/generated
  node_modules/.bin/pbjs -t static-module -w commonjs --no-beautify --force-long -o src/images/generated/criu.js proto/criu/images.proto
  node_modules/.bin/pbts -o src/images/generated/criu.d.ts src/images/generated/criu.js
fi

# The CLI runs compiled JavaScript: it starts several times faster than
# through the TypeScript loader, and `stagegate restore` is on the restore path.
if newer build/js/cli/main.js tsconfig.json tsconfig.build.json $(find src -name '*.ts' -o -name '*.js' | grep -v '^src/.*/generated/.*\.d\.ts$'); then
  say "compiling the CLI"
  rm -rf build/js
  node_modules/.bin/tsc -p tsconfig.build.json
fi

hook_in=(hooks/*.c hooks/*.h hooks/Makefile proto/stagegate.proto proto/criu/rpc.proto)
if newer build/stagegate-hook "${hook_in[@]}" || newer build/stagegate-hook-full "${hook_in[@]}"; then
  say "building the hook"
  make -s -C hooks OUT="$root/build" >/dev/null
fi

# the addon reads checkpoints with protoc-c's codec of the same proto the JavaScript reader uses
if newer build/images.pb-c.c proto/criu/images.proto; then
  mkdir -p build
  protoc-c --proto_path=proto/criu --c_out=build proto/criu/images.proto
fi

if newer native/build/Release/stagegate_native.node native/*.cc native/*.h native/binding.gyp build/images.pb-c.c; then
  say "building the native addon"
  # Build against the installed Node headers when present: no header download.
  nodedir=(); [[ -f /usr/include/node/node.h ]] && nodedir=(--nodedir=/usr)
  (cd native && ../node_modules/.bin/node-gyp rebuild "${nodedir[@]}" --loglevel=error >/dev/null)
fi

if command -v mpicc >/dev/null && newer build/mpi-job demo/mpi-job.c; then
  say "building the MPI workload"
  mkdir -p build
  mpicc -O2 -Wall -o build/mpi-job demo/mpi-job.c
fi

if newer build/workload demo/workload.c; then
  say "building the demo workload"
  mkdir -p build
  cc -O2 -Wall -Wextra -o build/workload demo/workload.c
fi

if newer build/stream-peer demo/stream-peer.c; then
  say "building the TCP stream workload"
  mkdir -p build
  cc -O2 -Wall -Wextra -o build/stream-peer demo/stream-peer.c
fi
