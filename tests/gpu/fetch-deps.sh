#!/bin/sh
# Fetch, on a machine where apt works (this project's CPU machines), the Debian packages
# the stand-alone GPU build needs and a GPU machine lacks: OpenBLAS (pthread) and the
# Fortran runtime it links. They land in tests/gpu/deps/ (git-ignored): the .deb files
# themselves (run.sh unpacks them there) and the two headers of the -dev package.
# Carry tests/gpu/deps to the GPU machine with the working tree (about 8 MB).
# usage: tests/gpu/fetch-deps.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
deps="$here/deps"
pkgs="libopenblas0-pthread libgfortran5 libquadmath0"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
if ! apt-get download $pkgs libopenblas-pthread-dev >/dev/null 2>apt.err; then
    apt-get update >/dev/null 2>&1 || true
    apt-get download $pkgs libopenblas-pthread-dev >/dev/null 2>apt.err || {
        cat apt.err >&2
        echo "fetch-deps: apt-get download failed (this needs a Debian/Ubuntu machine with apt)" >&2
        exit 1
    }
fi
dpkg-deb -x libopenblas-pthread-dev_*.deb dev
inc=$(find dev -name cblas.h -path '*openblas-pthread*' | head -n 1)
[ -n "$inc" ] || { echo "fetch-deps: cblas.h not found in libopenblas-pthread-dev" >&2; exit 1; }

rm -rf "$deps"
mkdir -p "$deps/debs" "$deps/include"
cp "$(dirname "$inc")/cblas.h" "$(dirname "$inc")/openblas_config.h" "$deps/include/"
for p in $pkgs; do cp ${p}_*.deb "$deps/debs/"; done
{
    echo "# fetched $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
    for f in "$deps"/debs/*.deb; do dpkg-deb -f "$f" Package Version | paste -sd' ' -; done
} > "$deps/VERSIONS"
cat "$deps/VERSIONS"
du -sh "$deps"
