#!/bin/bash
# The demo: a five-interface host in namespaces, as plain Linux and then with stronghost.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
cargo test --locked --test demo -- --ignored --nocapture
