#!/usr/bin/env bash
# Prints how to render the kustomizations under deploy/: `kubectl kustomize` when kubectl is
# installed, else a kustomize built here from Go modules (cached outside the work tree, like
# the test clusters, so only the first run on a machine pays for the build, about a minute).
# The output's one line is a command that takes the directory as its last argument.
set -euo pipefail

if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  echo "kubectl kustomize"
  exit 0
fi

# The newest kustomize that builds with Go 1.26 (v5.8 needs Go 1.27).
version=v5.7.1
cache_root=${SECRETSYNC_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secretsync/testenv}
dir="$cache_root/kustomize-$version"
if [[ ! -x "$dir/kustomize" ]]; then
  mkdir -p "$dir"
  exec 9>"$dir/.build.lock"
  flock 9
  if [[ ! -x "$dir/kustomize" ]]; then
    command -v go >/dev/null || { echo "kustomize.sh: neither kubectl nor go is installed" >&2; exit 1; }
    echo "kustomize.sh: building kustomize $version into $dir (kubectl is not installed)" >&2
    rm -rf "$dir/partial"
    (cd "$dir" && GOBIN="$dir/partial" go install "sigs.k8s.io/kustomize/kustomize/v5@$version")
    mv "$dir/partial/kustomize" "$dir/kustomize"
    rmdir "$dir/partial"
  fi
fi
echo "$dir/kustomize build"
