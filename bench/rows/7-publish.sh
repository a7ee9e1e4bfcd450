# Row 7: publishing, `narbor push` of a 1 GB closure to a local docker-registry
# against `nix copy --to file://...?compression=zstd` (and compression none).
# Row 8: narinfo hits through `serve --oci` with a 1M-entry index, and the
# refresh cost when nothing changed.
#
# Both wait for `narbor push` and `serve --oci`. When they exist, measure here
# with `record 7 ...` / `record 8 ...` (systems: narbor, nix-copy) and drop the
# check below; the report already has their rows.

narbor_has() { "$NARBOR" "$1" --help > /dev/null 2>&1; }

row_7() {
  narbor_has push || { pending 7 "narbor push does not exist yet"; return; }
  pending 7 "narbor push exists but this row is not written yet"
}

row_8() {
  narbor_has push || { pending 8 "serve --oci (and narbor push to fill it) do not exist yet"; return; }
  pending 8 "serve --oci exists but this row is not written yet"
}
