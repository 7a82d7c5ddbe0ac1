#!/bin/bash
# Fuzzes every parser of untrusted input for SECONDS each (default 60), starting from the seeds
# in tests/fuzz/seeds (real clients' environments and lease files). Needs cargo-fuzz; the stable
# toolchain is told to accept the instrumentation flags (RUSTC_BOOTSTRAP), no nightly needed.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for t in hook_env networkd_lease classless_routes config; do
	corpus=$(mktemp -d)
	cp seeds/"$t"/* "$corpus"/
	cargo fuzz run --fuzz-dir . --sanitizer none "$t" "$corpus" -- -max_total_time="$secs" -print_final_stats=1 2>&1 |
		grep -E "^(stat::number_of_executed_units|stat::new_units_added|Done|==|SUMMARY|panicked)" | sed "s/^/$t: /"
	rm -rf "$corpus"
done
