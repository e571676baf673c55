#!/usr/bin/env bash
# Runs every test: type check, lint and format check, unit and marble tests, the hook and CLI against
# real sockets, and the end-to-end restores on real CRIU. Files run one at a
# time: the CRIU tests create pid namespaces and must not race each other.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
node_modules/.bin/tsc --noEmit
npm run --silent lint
bash scripts/podman-image.sh
shopt -s nullglob
files=(spec/unit/*.test.ts spec/marble/*.test.ts spec/integration/*.test.ts spec/e2e/*.test.ts)
# leak-check: a test file that leaves a process running fails. --test-force-exit: a file whose tests
# are done ends even if a failed test left a handle open (that check then runs and kills leftovers);
# --test-timeout: a test or file that hangs fails after 15 minutes instead of stalling the run.
exec node --import tsx --import ./spec/support/leak-check.ts --test --test-concurrency=1 --test-force-exit \
  --test-timeout=900000 "${files[@]}"
