#!/bin/bash
# Every test: unit tests, then the namespace labs (real dnsmasq, isc-dhcp-client, nftables, curl).
# Needs root; touches only namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
cargo build --locked --all-targets
# One lab at a time: each builds a handful of namespaces and DHCP clients on a 2-core machine.
cargo test --locked -- --test-threads=1
