#!/bin/bash
# The demo: a five-interface host in namespaces, as plain Linux and then with stronghost.
# Installs only what the demo runs (tests/deps.sh demo); its verdict is the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh demo
rm -f target/demo-verdict
status=0
cargo test --locked --test demo -- --ignored --nocapture || status=$?
echo
cat target/demo-verdict 2>/dev/null || echo "verdict: FAIL — the demo did not finish (exit $status)"
exit "$status"
