# The narbor binary, built from this repository with nixpkgs' Rust tooling.
# `callPackage ./nix/package.nix { }` (the flake and its overlay do this).
{
  lib,
  rustPlatform,
}:

let
  workspace = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "narbor";
  inherit (workspace.workspace.package) version;

  # Only what cargo needs: a change to the README, the workflows or this
  # directory does not rebuild the binary.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../crates
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [
    "--package"
    "narbor"
  ];

  # The test suite drives the real Nix client as root in single-user mode, a
  # real OCI registry and network namespaces: none of that exists in the
  # build sandbox. `scripts/test.sh` runs it; the flake's `checks` run the
  # NixOS VM test instead.
  doCheck = false;

  meta = {
    description = "Nix binary cache: pull-through cache and OCI-registry-backed cache in one binary";
    homepage = workspace.workspace.package.repository;
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "narbor";
    platforms = lib.platforms.linux;
  };
}
