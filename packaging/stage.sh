#!/bin/bash
# Lays out every file of the package under ROOT, with its mode: stage.sh DISTRO BINARY ROOT
# DISTRO is debian or fedora (they differ in the dhclient and dhcpcd hook places).
set -euo pipefail
distro=$1 bin=$2 root=$3
top=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$root"
inst() { install -D -m "$1" "$2" "$root/$3"; }
inst 0755 "$bin" usr/sbin/stronghost
strip --strip-unneeded "$root/usr/sbin/stronghost" 2>/dev/null || :
inst 0644 "$top/dist/stronghost.conf" etc/stronghost/stronghost.conf
inst 0644 "$top/dist/networkd.conf.d/stronghost.conf" usr/lib/systemd/networkd.conf.d/stronghost.conf
inst 0755 "$top/hooks/networkmanager-dispatcher" usr/lib/NetworkManager/dispatcher.d/70-stronghost
inst 0755 "$top/hooks/udhcpc-script" usr/lib/stronghost/udhcpc-script
case "$distro" in
debian)
	# Staged where Debian 12's dh_installsystemd looks for units; debian/rules moves it to
	# /usr/lib/systemd/system once the maintainer-script snippets are made.
	inst 0644 "$top/dist/systemd/stronghost-watch.service" lib/systemd/system/stronghost-watch.service
	inst 0644 "$top/hooks/dhclient-exit-hook" etc/dhcp/dhclient-exit-hooks.d/stronghost
	inst 0644 "$top/hooks/dhcpcd-hook" usr/lib/dhcpcd/dhcpcd-hooks/70-stronghost
	inst 0755 "$top/hooks/ifupdown-hook" etc/network/if-up.d/stronghost
	inst 0755 "$top/hooks/ifupdown-hook" etc/network/if-post-down.d/stronghost
	doc=usr/share/doc/stronghost
	zsh=usr/share/zsh/vendor-completions
	;;
fedora)
	inst 0644 "$top/dist/systemd/stronghost-watch.service" usr/lib/systemd/system/stronghost-watch.service
	inst 0644 "$top/dist/systemd/80-stronghost.preset" usr/lib/systemd/system-preset/80-stronghost.preset
	# dhclient-script and NetworkManager's dhclient glue source only executable scripts.
	inst 0755 "$top/hooks/dhclient.d/stronghost.sh" etc/dhcp/dhclient.d/stronghost.sh
	inst 0644 "$top/hooks/dhcpcd-hook" usr/libexec/dhcpcd-hooks/70-stronghost
	doc=usr/share/doc/stronghost
	zsh=usr/share/zsh/site-functions
	inst 0644 "$top/packaging/debian/copyright" usr/share/licenses/stronghost/copyright
	;;
esac
# Man pages and completions, generated from the CLI definitions; names for the table range and
# protocol (so `ip rule` and `ip route` say whose they are), generated from the shipped config.
gen=$(mktemp -d)
if [ -x "$top/target/debug/examples/gen_docs" ]; then
	"$top/target/debug/examples/gen_docs" "$gen" "$top/dist/stronghost.conf"
else
	(cd "$top" && cargo run -q --locked --example gen_docs -- "$gen" "$top/dist/stronghost.conf")
fi
inst 0644 "$gen/iproute2/rt_tables.conf" etc/iproute2/rt_tables.d/stronghost.conf
inst 0644 "$gen/iproute2/rt_protos.conf" etc/iproute2/rt_protos.d/stronghost.conf
for m in "$gen"/man/*.[58]; do
	gzip -9n -c "$m" >"$gen/$(basename "$m").gz"
	inst 0644 "$gen/$(basename "$m").gz" "usr/share/man/man${m##*.}/$(basename "$m").gz"
done
inst 0644 "$gen/completions/stronghost.bash" usr/share/bash-completion/completions/stronghost
inst 0644 "$gen/completions/_stronghost" "$zsh/_stronghost"
inst 0644 "$gen/completions/stronghost.fish" usr/share/fish/vendor_completions.d/stronghost.fish
rm -rf "$gen"
inst 0644 "$top/README.md" "$doc/README.md"
# The operator's documents (README links them): design.md has the table of other tools' marks.
inst 0644 "$top/docs/design.md" "$doc/design.md"
inst 0644 "$top/docs/operations.md" "$doc/operations.md"
# Debian: debhelper installs copyright, changelog and lintian overrides from packaging/debian.
