#!/usr/bin/env bash
# Builds what installables.nix lists and prints the store paths to publish,
# one a line, on standard output (logs go to standard error). A dev shell
# counts as the closure of its `nix develop` environment.
set -euo pipefail
cd "$(dirname "$0")/../.."

list="$(nix eval --json --impure --file .github/narbor/installables.nix)"
mapfile -t builds < <(jq -r '.build[]' <<<"$list")
mapfile -t shells < <(jq -r '.shells[]' <<<"$list")
echo "building ${#builds[@]} packages and systems, ${#shells[@]} dev shells" >&2

if ((${#builds[@]})); then
  nix build --no-link --print-out-paths --print-build-logs "${builds[@]/#/.#}"
fi

profiles="$(mktemp -d)"
trap 'rm -rf "$profiles"' EXIT
for i in "${!shells[@]}"; do
  nix develop ".#${shells[$i]}" --profile "$profiles/shell-$i" --command true >&2
  readlink -f "$profiles/shell-$i"
done
