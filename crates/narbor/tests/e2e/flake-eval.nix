# Evaluates flake.nix's package, overlay and module outputs without nixpkgs,
# for the packaging tests: a stand-in `nixpkgs` whose buildRustPackage returns
# its arguments, so the test sees what nix/package.nix asks nixpkgs to build.
# (Dev shells and the VM check need real nixpkgs: not evaluated here.)
let
  flake = import ../../../../flake.nix;
  inherit (builtins) listToAttrs mapAttrs;
  lib = {
    genAttrs =
      names: f:
      listToAttrs (
        map (name: {
          inherit name;
          value = f name;
        }) names
      );
    mkDefault = content: {
      _type = "override";
      inherit content;
    };
    importTOML = file: builtins.fromTOML (builtins.readFile file);
    fileset = {
      toSource = args: args;
      unions = files: files;
    };
    licenses = {
      mit = "MIT";
      asl20 = "Apache-2.0";
    };
    platforms.linux = [ "linux" ];
  };
  pkgsFor = system: {
    stdenv.hostPlatform.system = system;
    callPackage =
      file: args:
      import file (
        {
          inherit lib;
          rustPlatform.buildRustPackage = attrs: attrs;
        }
        // args
      );
  };
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] pkgsFor;
  };
  outputs = flake.outputs { inherit self nixpkgs; };
  self = outputs;
  describe = p: {
    inherit (p)
      pname
      version
      cargoBuildFlags
      doCheck
      ;
    lockFile = toString p.cargoLock.lockFile;
    srcRoot = toString p.src.root;
    srcFiles = map toString p.src.fileset;
    inherit (p.meta) mainProgram license;
  };
  module = outputs.nixosModules.default { pkgs = pkgsFor "aarch64-linux"; };
in
{
  inputs = flake.inputs;
  outputNames = builtins.attrNames outputs;
  systems = builtins.attrNames outputs.packages;
  packages = mapAttrs (_: describe) outputs.packages.x86_64-linux;
  overlay = describe (outputs.overlays.default (pkgsFor "x86_64-linux") { }).narbor;
  moduleImports = map toString module.imports;
  modulePackage = describe module.services.narbor.package.content;
  modulePackagePriority = module.services.narbor.package._type;
  plainModule = toString outputs.nixosModules.narbor;
}
