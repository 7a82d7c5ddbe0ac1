#!/bin/bash
# Builds target/package/stronghost_VERSION-1_amd64.deb with debhelper (dpkg-buildpackage) from
# packaging/debian and the tree packaging/stage.sh lays out.
# build-deb.sh [--binary PATH]   (default: a release build)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if [ "${1-}" = --binary ]; then bin=$(realpath "$2"); else
	cargo build --release --locked
	bin=$top/target/release/stronghost
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
debversion=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "${debversion%-*}" != "$version" ]; then
	echo "packaging/debian/changelog is at $debversion but Cargo.toml at $version: add a changelog entry (dch -v $version-1)" >&2
	exit 1
fi
if ! command -v dh >/dev/null; then
	echo "debhelper is not installed: apt-get install debhelper" >&2
	exit 1
fi
out=$top/target/package
build=$out/deb-build/stronghost-$version
rm -rf "$out/deb-build"
mkdir -p "$build"
cp -a packaging/debian "$build/debian"
bash packaging/stage.sh debian "$bin" "$build/stage"
# -b: binary only; -d: the build dependency is debhelper itself, checked above.
(cd "$build" && dpkg-buildpackage -b -d -uc -us --no-sign >"$out/deb-build/build.log" 2>&1) || {
	cat "$out/deb-build/build.log" >&2
	exit 1
}
deb=$out/stronghost_${debversion}_amd64.deb
mv "$out/deb-build/stronghost_${debversion}_amd64.deb" "$deb"
echo "${deb#"$top"/}"
