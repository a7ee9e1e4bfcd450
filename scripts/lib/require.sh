# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/bench.sh.
#
#   require WHO COMMAND:PACKAGE...
#
# Installs the Debian packages whose commands are missing (as root, with
# apt-get), then fails naming what is still missing. Packages are never allowed
# to start system services while installing (nginx, avahi-daemon would
# otherwise start on the machine's real interfaces where an init system runs).
require() {
  local who=$1 pair missing=() still=()
  shift
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "$who: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    local policy=/usr/sbin/policy-rc.d placed=
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && placed=1
    fi
    apt-get install -y -qq "${missing[@]}" >/dev/null || true
    [ -z "$placed" ] || rm -f "$policy"
  fi
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || still+=("${pair#*:}")
  done
  if ((${#still[@]})); then
    echo "$who: missing Debian packages: ${still[*]}" >&2
    echo "  install them (as root: apt-get install ${still[*]}) and run again." >&2
    exit 1
  fi
}
