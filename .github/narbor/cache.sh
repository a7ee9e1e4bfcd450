#!/usr/bin/env bash
# The repository's Nix cache in its GitHub container registry:
#   cache.sh push PATHS-FILE   push what upstream caches lack (signed)
#   cache.sh gc PATHS-FILE     drop what is neither reachable from these roots
#                              nor younger than NARBOR_RETENTION (default 30d)
# PATHS-FILE: store paths, one a line (build.sh's output).
#
# Environment: GITHUB_REPOSITORY and GITHUB_TOKEN (set by Actions; the token
# needs `packages: write`), NARBOR_SIGNING_KEY (push: the secret key from
# `narbor keygen`), NARBOR_STORE (default oci://ghcr.io/OWNER/REPO/nix-cache,
# lower-cased: registry names must be), DRY_RUN=true (gc: only print the plan).
# Secrets arrive only through the environment and go to a file only readable
# by this user; nothing here prints them.
set -euo pipefail

usage() {
  echo "usage: $0 push|gc PATHS-FILE" >&2
  exit 2
}
[ $# = 2 ] || usage
command="$1"
paths="$2"
store="${NARBOR_STORE:-oci://ghcr.io/${GITHUB_REPOSITORY,,}/nix-cache}"

case "$command" in
push)
  if [ -z "${NARBOR_SIGNING_KEY:-}" ]; then
    echo "::error::the NARBOR_SIGNING_KEY secret is not set. Make a key with" \
      "'narbor keygen ghcr.io/${GITHUB_REPOSITORY,,}-1 secret.key public.key'," \
      "store secret.key as the repository secret NARBOR_SIGNING_KEY, and give" \
      "public.key to the cache's users (trusted-public-keys)." >&2
    exit 1
  fi
  key="$(mktemp)"
  trap 'rm -f "$key"' EXIT
  chmod 600 "$key"
  printf '%s\n' "$NARBOR_SIGNING_KEY" >"$key"
  narbor push --to "$store" --key-file "$key" - <"$paths"
  ;;
gc)
  roots=()
  while IFS= read -r path; do
    [ -n "$path" ] && roots+=(--root "$path")
  done <"$paths"
  if ((${#roots[@]} == 0)); then
    echo "::error::no roots in $paths: refusing to collect the whole cache" >&2
    exit 1
  fi
  dry=()
  if [ "${DRY_RUN:-false}" = true ]; then
    dry=(--dry-run)
  fi
  narbor gc --store "$store" --retention "${NARBOR_RETENTION:-30d}" "${dry[@]}" "${roots[@]}"
  ;;
*) usage ;;
esac
