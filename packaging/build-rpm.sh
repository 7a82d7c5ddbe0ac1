#!/bin/bash
# Builds target/package/stronghost-VERSION-1.x86_64.rpm with rpmbuild from the staged tree.
# build-rpm.sh [--binary PATH]   (default: a release build)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if [ "${1-}" = --binary ]; then bin=$2; else
	cargo build --release --locked
	bin=target/release/stronghost
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
out=$top/target/package
stage=$out/rpm-root
mkdir -p "$out/rpmbuild"
bash packaging/stage.sh fedora "$bin" "$stage"
# The systemd RPM macros come with systemd-rpm-macros on Fedora/RHEL; elsewhere (this Debian CI)
# the fallback in packaging/rpm supplies them.
macros=()
if [ -z "$(rpm --eval '%{?systemd_post:yes}')" ]; then
	macros=(--load "$top/packaging/rpm/macros.systemd-fallback")
fi
rpmbuild "${macros[@]}" -bb --quiet -D "_build_requires_check 0" --nodeps \
	--define "_topdir $out/rpmbuild" --define "version $version" --define "stage $stage" \
	--define "_rpmdir $out" --define "_build_id_links none" --define "__os_install_post %{nil}" \
	packaging/rpm/stronghost.spec >/dev/null
echo "$out/x86_64/stronghost-$version-1.x86_64.rpm"
