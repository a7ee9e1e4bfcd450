#!/usr/bin/env bash
# Runs every narbor test. On a fresh Debian machine it first installs what the
# tests need (the real Nix client, the CNCF registry, skopeo, ...) when run as
# root; otherwise it names what is missing and stops. It never skips a test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh NAME       # extra arguments go to `cargo test` (a filter)
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
required=(
  "nix-store:nix-bin"
  "docker-registry:docker-registry"
  "htpasswd:apache2-utils"
  "skopeo:skopeo"
  "curl:curl"
  "zstd:zstd"
  "openssl:openssl"
)
missing=()
for pair in "${required[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done

if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  still=()
  for pair in "${required[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || still+=("${pair#*:}")
  done
  if ((${#still[@]})); then
    echo "scripts/test.sh: missing Debian packages: ${still[*]}" >&2
    echo "  install them (as root: apt-get install ${still[*]}) and run again." >&2
    exit 1
  fi
fi

# The Nix tests run the real client in single-user mode: they build into and
# copy out of /nix/store, which needs root.
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the end-to-end tests run Nix in single-user mode and must run as root." >&2
  exit 1
fi

# The real cache.nixos.org corpus for the narinfo conformance test.
if [ -z "${NARBOR_NARINFO_CORPUS:-}" ]; then
  corpus=../shared/data/cache.nixos.org-narinfos.txt.zst
  if [ -f "$corpus" ]; then
    NARBOR_NARINFO_CORPUS="$(realpath "$corpus")"
    export NARBOR_NARINFO_CORPUS
  else
    echo "scripts/test.sh: NARBOR_NARINFO_CORPUS not set and $corpus not found: the corpus test will say it did not run" >&2
  fi
fi

exec cargo test --workspace --locked "$@"
