# Evaluates nix/module.nix with real nixpkgs code, for the packaging tests.
#
# `fixture` is ../shared/fixtures/nixpkgs-subset (see its README): nixpkgs'
# own lib and module system, the real firewall, nix.settings (nix.conf),
# security.acme and systemd unit rendering, with stub packages that are
# never built. Its example harness does the evaluation; this file only picks
# the configuration and returns what the tests look at, as data. Nothing of
# the fixture is copied here.
#
#   import ./module-nixpkgs.nix {
#     fixture = "/…/nixpkgs-subset";
#     user = { lanMode = true; };          # services.narbor
#     extra = { security.acme = { … }; };  # any other NixOS configuration
#   }
{
  fixture,
  # A configuration of the fixture's example-harness/configs.nix underneath:
  # `defaultFromPkgs` is `services.narbor.enable = true` with the package
  # from pkgs (as the flake's overlay provides it), `disabled` is
  # `enable = false`.
  base ? "defaultFromPkgs",
  user ? { },
  extra ? { },
  module ? ../../../../nix/module.nix,
}:

let
  result = import "${fixture}/example-harness/eval.nix" {
    libPath = "${fixture}/lib";
    config = base;
    narborModule = module;
    extraModules = [
      { services.narbor = user; }
      extra
    ];
  };
  c = result.eval.config;
  inherit (result.eval._module.args) pkgs;
  narbor = c.systemd.services.narbor or null;
  unit = c.systemd.units."narbor.service" or null;
in
{
  inherit (result) failedAssertions warnings;
  settings = c.services.narbor.settings;
  # The config file the module must run narbor with: the one made from the
  # settings above.
  configFile = toString ((pkgs.formats.toml { }).generate "narbor.toml" c.services.narbor.settings);
  package = toString c.services.narbor.package;
  service =
    if narbor == null then
      null
    else
      {
        inherit (narbor)
          after
          wants
          wantedBy
          environment
          ;
        serviceConfig = narbor.serviceConfig // {
          ExecStart = toString narbor.serviceConfig.ExecStart;
        };
      };
  startScript = if narbor == null then null else narbor.serviceConfig.ExecStart.text;
  # narbor.service as systemd reads it.
  unitText = if unit == null then null else unit.text;
  units = builtins.attrNames c.systemd.units;
  firewall = {
    tcp = c.networking.firewall.allowedTCPPorts;
    udp = c.networking.firewall.allowedUDPPorts;
  };
  acme = builtins.mapAttrs (_: cert: { inherit (cert) group reloadServices; }) c.security.acme.certs;
  nixSettings = {
    inherit (c.nix.settings) substituters trusted-public-keys;
  };
  nixConf = c.environment.etc."nix/nix.conf".source.text;
}
