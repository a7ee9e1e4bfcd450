{
  description = "narbor: a Nix binary cache server (pull-through cache and OCI-registry-backed cache)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # narbor is a Linux server (LAN mode, systemd, the NixOS module).
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: _prev: { narbor = final.callPackage ./nix/package.nix { }; };

      packages = forAllSystems (pkgs: {
        narbor = pkgs.callPackage ./nix/package.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.narbor;
      });

      # services.narbor, with `package` defaulting to this flake's build.
      nixosModules.default =
        { pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.narbor.package =
            lib.mkDefault
              self.packages.${pkgs.stdenv.hostPlatform.system}.narbor;
        };
      # The module alone: `package` defaults to pkgs.narbor (overlays.default).
      nixosModules.narbor = ./nix/module.nix;

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.narbor ];
          packages = with pkgs; [
            clippy
            rustfmt
            rust-analyzer
            # what scripts/test.sh installs from Debian on a CI machine
            docker-distribution
            skopeo
            apacheHttpd
            curl
            zstd
            actionlint
            shellcheck
          ];
        };
      });

      checks = forAllSystems (
        pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
        in
        {
          package = self.packages.${system}.narbor;
          devShell = self.devShells.${system}.default;
          # The module in a VM: the hardened unit starts, serves
          # /nix-cache-info with the configured priority, and its config
          # file is what `narbor check-config` accepts.
          module = pkgs.testers.runNixOSTest {
            name = "narbor-module";
            nodes.machine = {
              imports = [ self.nixosModules.default ];
              services.narbor = {
                enable = true;
                listen = [ "127.0.0.1:37515" ];
                upstreams = [ ]; # the VM has no network
                priority = 25;
                maxSize = "1G";
                useAsSubstituter.enable = true;
              };
            };
            testScript =
              { nodes, ... }:
              let
                # The same file the module generates (same derivation).
                configFile = (pkgs.formats.toml { }).generate "narbor.toml" nodes.machine.services.narbor.settings;
              in
              ''
              machine.wait_for_unit("narbor.service")
              machine.wait_for_open_port(37515)
              info = machine.succeed("${pkgs.curl}/bin/curl -fsS http://127.0.0.1:37515/nix-cache-info")
              assert "Priority: 25" in info, info
              machine.succeed("grep -q 'http://127.0.0.1:37515' /etc/nix/nix.conf")
              machine.succeed("test -d /var/cache/private/narbor")
              machine.succeed("${lib.getExe self.packages.${system}.narbor} check-config ${configFile}")
              machine.succeed("grep -rq ${configFile} /etc/systemd/system/narbor.service $(systemctl show -P ExecStart narbor.service | grep -o '/nix/store/[^ ;]*-narbor-start')")
              '';
          };
        }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
