# What the nix-cache workflows build and push: the flake's packages and dev
# shells for `system`, and the system toplevel of every NixOS configuration
# whose host platform is `system` (others cannot be built on this runner).
# Attribute paths into the flake, as JSON for build.sh:
#   nix eval --json --impure --file .github/narbor/installables.nix
{
  flake ? builtins.getFlake (toString ../..),
  system ? builtins.currentSystem,
}:

let
  namesOf = output: builtins.attrNames (flake.${output}.${system} or { });
  configs = flake.nixosConfigurations or { };
  isForSystem = name: (configs.${name}.pkgs.stdenv.hostPlatform.system or system) == system;
in
{
  build =
    map (name: "packages.${system}.${name}") (namesOf "packages")
    ++ map (name: "nixosConfigurations.${name}.config.system.build.toplevel") (
      builtins.filter isForSystem (builtins.attrNames configs)
    );
  # A dev shell cannot be built; `nix develop --profile` realises what it needs.
  shells = map (name: "devShells.${system}.${name}") (namesOf "devShells");
}
