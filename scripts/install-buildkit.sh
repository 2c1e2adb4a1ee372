#!/usr/bin/env bash
# install-buildkit.sh VERSION DIR   build buildkitd and buildctl of BuildKit
#   VERSION (github.com/moby/buildkit) into DIR, from the source the Go module
#   proxy serves; a no-op when both binaries in DIR already report VERSION.
#
# `go install pkg@version` refuses BuildKit: its go.mod has exclude directives.
# So the module is downloaded through the proxy (go mod download), copied out of
# the read-only module cache, and built there with -mod=mod, as BuildKit's own
# Dockerfile builds its release binaries: CGO_ENABLED=0, tags osusergo netgo
# static_build seccomp (the oci worker runs an external runc, the overlayfs
# snapshotter needs no cgo), version stamped with -X so that --version says it.
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,4p' "$0" >&2; exit 2; }
version=$1 dir=$2
go=${GO:-go}
mod=github.com/moby/buildkit

have() { "$dir/$1" --version 2>/dev/null | awk '{ print $3 }' || true; }
if [ "$(have buildkitd)" = "$version" ] && [ "$(have buildctl)" = "$version" ]; then
  echo "buildkit $version: $dir/buildkitd $dir/buildctl"
  exit 0
fi
echo "installing buildkitd and buildctl $version into $dir (found: $(have buildkitd) $(have buildctl))"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# Outside any module, so that Berth's go.mod is not consulted or touched.
(cd "$work" && GOWORK=off GOFLAGS=-mod=mod "$go" mod download "$mod@$version")
src=$(cd "$work" && "$go" env GOMODCACHE)/$mod@$version
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
start=$(date +%s)
(cd "$work/src" && CGO_ENABLED=0 GOWORK=off GOFLAGS= "$go" build -mod=mod -trimpath \
  -tags "osusergo netgo static_build seccomp" \
  -ldflags "-s -w -X $mod/version.Version=$version -X $mod/version.Package=$mod" \
  -o "$work/bin/" ./cmd/buildkitd ./cmd/buildctl)
mkdir -p "$dir"
install -m 0755 "$work/bin/buildkitd" "$work/bin/buildctl" "$dir/"
echo "built buildkitd and buildctl $version in $(( $(date +%s) - start ))s: $dir"
