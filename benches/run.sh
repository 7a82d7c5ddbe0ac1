#!/bin/bash
# The benchmarks (not tests): a 256-interface lab in namespaces, measured in one run.
# Writes target/bench-results.md. Needs root; touches only namespaces it creates.
# STRONGBENCH_ONLY=scale (per_event, scale, storm, watcher, data_plane, profile; comma-separated) runs a part;
# STRONGBENCH_BASELINE=/path/to/another/stronghost runs the churn part with that build too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/deps.sh
if ! command -v iperf3 >/dev/null || ! command -v iptables >/dev/null || ! command -v perf >/dev/null; then
	[ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iperf3 iptables linux-perf
	systemctl disable --quiet iperf3.service 2>/dev/null || :
fi
cargo bench --locked --bench strongbench
