#!/bin/sh
# stronghost for RHEL/Fedora dhclient-script: /etc/dhcp/dhclient.d/stronghost.sh (sourced).
# dhclient-script calls stronghost_config on BOUND/RENEW/REBIND/REBOOT and stronghost_restore on
# EXPIRE/FAIL/RELEASE/STOP. NetworkManager's 11-dhclient dispatcher calls these functions too,
# with CONNECTION_UUID set; NetworkManager has its own stronghost hook, so do nothing then.
# Never `exit`, never expand lease values: stronghost reads the environment itself.

stronghost_run() {
	[ -n "${CONNECTION_UUID-}" ] && return 0
	command -v stronghost >/dev/null 2>&1 || return 0
	timeout 20 stronghost hook dhclient </dev/null || :
	return 0
}

stronghost_config() {
	stronghost_run
}

stronghost_restore() {
	stronghost_run
}
