#!/bin/bash
# Installs the Debian packages the lab uses, without starting any service: a policy-rc.d that
# refuses every start is in place for the duration of the install (and removed if we added it).
# `deps.sh demo`: only what the demo runs (no network stack besides dhclient, no packaging tools).
set -euo pipefail
if [ "${1:-}" = demo ]; then
	pkgs=(iproute2 nftables dnsmasq-base isc-dhcp-client curl util-linux procps)
else
	pkgs=(iproute2 nftables iptables iputils-ping iputils-arping dnsmasq-base isc-dhcp-client dhcpcd-base udhcpc ifupdown network-manager systemd dbus-daemon curl util-linux procps lintian rpm rpmlint debhelper mmdebstrap)
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	added_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\n# added by stronghost tests/deps.sh: start no service during installs\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		added_policy=1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	[ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
	# The stacks are run only inside the lab's namespaces: a package installed just for the tests
	# must not take over this machine's network at its next boot.
	for p in "${missing[@]}"; do
		case "$p" in
		network-manager) units="NetworkManager.service NetworkManager-wait-online.service NetworkManager-dispatcher.service" ;;
		ifupdown) units="networking.service" ;;
		*) units= ;;
		esac
		for u in $units; do systemctl disable --quiet "$u" 2>/dev/null || :; done
	done
fi
if ! command -v cargo >/dev/null 2>&1; then
	echo "cargo not found: install a Rust toolchain (https://rustup.rs), then run this again" >&2
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	echo "the lab builds network namespaces: run as root" >&2
	exit 1
fi
