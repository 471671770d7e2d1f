#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that the integration tests start, from the Go
# module in ./go, into a cache outside the work tree keyed by the Kubernetes version.
# Prints the cache directory on stdout; progress goes to stderr. Idempotent: when both
# binaries are cached it only prints the directory. A file lock keeps concurrent callers
# (two test binaries, a script and a test) from building twice.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
module="$here/go"
version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$module/go.mod")
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$module/go.mod")
cache_root=${SECRETSYNC_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secretsync/testenv}
cache="$cache_root/$version"

built() { [[ -x "$cache/kube-apiserver" && -x "$cache/etcd" ]]; }

if ! built; then
  mkdir -p "$cache"
  exec 9>"$cache/.build.lock"
  flock 9
  if ! built; then
    command -v go >/dev/null || { echo "build.sh: go is not installed" >&2; exit 1; }
    minor=${version#v1.}; minor=${minor%%.*}
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    cd "$module"
    start=$SECONDS
    echo "build.sh: building etcd $etcd_version into $cache (first run on this machine)" >&2
    go build -trimpath -ldflags "-s -w" -o "$cache/etcd.partial" go.etcd.io/etcd/server/v3
    mv "$cache/etcd.partial" "$cache/etcd"
    echo "build.sh: building kube-apiserver $version (takes several minutes on 2 cores)" >&2
    go build -trimpath -ldflags "$ldflags" -o "$cache/kube-apiserver.partial" \
      k8s.io/kubernetes/cmd/kube-apiserver
    mv "$cache/kube-apiserver.partial" "$cache/kube-apiserver"
    echo "build.sh: built in $((SECONDS - start))s" >&2
  fi
fi
echo "$cache"
