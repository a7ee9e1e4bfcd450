# NixOS module: services.narbor, a Nix binary cache (pull-through and/or
# served from an OCI registry).
#
# The flake exports it as nixosModules.default (with `package` defaulting to
# the flake's build) and nixosModules.narbor (this file alone: `package`
# defaults to pkgs.narbor, e.g. from the flake's overlay).
#
# The module writes a TOML config (pkgs.formats.toml) from its options and
# runs `narbor serve --config FILE` as a hardened DynamicUser service. Secrets
# (registry token, signing key, TLS key, refresh token) reach the service only
# through systemd's LoadCredential: never the Nix store, the unit file or the
# command line.
#
# No `with lib;` on purpose: every name is bound explicitly, so
# `nix-instantiate --parse` (run by the test suite) rejects a misspelt one.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    any
    escapeShellArgs
    last
    literalExpression
    literalMD
    mapAttrs
    mkDefault
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    mkPackageOption
    optional
    optionalAttrs
    optionalString
    optionals
    removePrefix
    splitString
    toInt
    types
    unique
    ;

  cfg = config.services.narbor;
  settingsFormat = pkgs.formats.toml { };

  # Where systemd puts the LoadCredential= files of narbor.service. The
  # config file names them by this path; the start script also has it as
  # $CREDENTIALS_DIRECTORY.
  credentialsDir = "/run/credentials/narbor.service";

  acmeHost =
    if cfg.tls.useACMEHost != null then
      cfg.tls.useACMEHost
    else if cfg.tls.enableACME then
      cfg.tls.domain
    else
      null;
  acmeDir = "/var/lib/acme/${acmeHost}";
  tlsFromFiles = cfg.tls.certificateFile != null;
  tlsEnabled = acmeHost != null || tlsFromFiles;

  # What narbor listens on when `listen` is null: its own defaults.
  effectiveListen =
    if cfg.listen != null then
      cfg.listen
    else if cfg.lanMode then
      [ "0.0.0.0:80" ]
    else
      [ "127.0.0.1:37515" ];
  portOf = addr: toInt (last (splitString ":" addr));
  ports = unique (map portOf (effectiveListen ++ cfg.tls.redirectListen));
  bindsLowPort = any (port: port < 1024) ports;

  firstListen = builtins.head effectiveListen;
  firstHost = builtins.substring 0 (
    builtins.stringLength firstListen - builtins.stringLength (toString (portOf firstListen)) - 1
  ) firstListen;
  # A wildcard address is reachable from this host on loopback.
  localHost =
    if firstHost == "0.0.0.0" || firstHost == "" then
      "127.0.0.1"
    else if firstHost == "[::]" then
      "[::1]"
    else
      firstHost;
  defaultUrl =
    if tlsEnabled then
      "https://${
        if acmeHost != null then acmeHost else localHost
      }${optionalString (portOf firstListen != 443) ":${toString (portOf firstListen)}"}"
    else
      "http://${localHost}:${toString (portOf firstListen)}";

  # The config keys this module sets from its options; `settings` overrides
  # any of them. Keys are narbor's (see packaging/narbor.toml).
  generated =
    {
      cache-dir = cfg.cacheDir;
      max-size = cfg.maxSize;
      priority = cfg.priority;
      trusted-keys = cfg.trustedKeys;
      stats-public = cfg.statsPublic;
      lan = cfg.lanMode;
      http-redirect-listen = cfg.tls.redirectListen;
    }
    // optionalAttrs (cfg.listen != null) { listen = cfg.listen; }
    // (
      if cfg.upstreams == [ ] then
        { no-upstream = true; }
      else
        {
          upstreams = cfg.upstreams;
          no-upstream = false;
        }
    )
    // optionalAttrs (cfg.signKeyFile != null) { sign-key-file = "${credentialsDir}/sign-key"; }
    // optionalAttrs (cfg.netrcFile != null) { netrc-file = "${credentialsDir}/netrc"; }
    // optionalAttrs (cfg.upstreamTokenFiles != { }) {
      upstream-token-files = lib.imap0 (
        i: host: "${host}=${credentialsDir}/upstream-token-${toString i}"
      ) tokenHosts;
    }
    // optionalAttrs (acmeHost != null) {
      tls-cert = "${acmeDir}/fullchain.pem";
      tls-key = "${acmeDir}/key.pem";
    }
    // optionalAttrs tlsFromFiles {
      tls-cert = "${credentialsDir}/tls-cert";
      tls-key = "${credentialsDir}/tls-key";
    }
    // optionalAttrs (cfg.oci.store != null) { oci = cfg.oci.store; }
    // optionalAttrs (cfg.oci.refreshTokenFile != null) {
      refresh-token-file = "${credentialsDir}/refresh-token";
    };

  configFile = settingsFormat.generate "narbor.toml" cfg.settings;

  # Secrets are read from the credential files at start, into the
  # environment of narbor alone.
  startScript = pkgs.writeShellScript "narbor-start" ''
    set -euo pipefail
    ${optionalString (cfg.oci.tokenFile != null) (
      if cfg.oci.username != null then
        ''
          NARBOR_REGISTRY_PASSWORD="$(< "$CREDENTIALS_DIRECTORY/registry-token")"
          export NARBOR_REGISTRY_PASSWORD
        ''
      else
        ''
          GITHUB_TOKEN="$(< "$CREDENTIALS_DIRECTORY/registry-token")"
          export GITHUB_TOKEN
        ''
    )}
    exec ${lib.getExe cfg.package} serve --config ${configFile} ${escapeShellArgs cfg.extraArgs}
  '';

  # Bearer-token files by upstream host, in a fixed order (credential names
  # must be file names: one per index).
  tokenHosts = builtins.attrNames cfg.upstreamTokenFiles;

  credentials =
    optional (cfg.oci.tokenFile != null) "registry-token:${cfg.oci.tokenFile}"
    ++ optional (cfg.netrcFile != null) "netrc:${cfg.netrcFile}"
    ++ lib.imap0 (
      i: host: "upstream-token-${toString i}:${cfg.upstreamTokenFiles.${host}}"
    ) tokenHosts
    ++ optional (cfg.oci.refreshTokenFile != null) "refresh-token:${cfg.oci.refreshTokenFile}"
    ++ optional (cfg.signKeyFile != null) "sign-key:${cfg.signKeyFile}"
    ++ optionals tlsFromFiles [
      "tls-cert:${cfg.tls.certificateFile}"
      "tls-key:${cfg.tls.keyFile}"
    ];

  # A path given as a string, not a Nix path literal: a literal would copy
  # the secret into the world-readable Nix store.
  secretPath = types.nullOr (types.strMatching "/.*");
in
{
  options.services.narbor = {
    enable = mkEnableOption "narbor, a Nix binary cache server";

    package = mkPackageOption pkgs "narbor" { };

    listen = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [
        "0.0.0.0:37515"
        "[::]:37515"
      ];
      description = ''
        Addresses to listen on, `ADDR:PORT`. `null` means narbor's default:
        `127.0.0.1:37515`, or with `lanMode` every interface on port 80.
      '';
    };

    upstreams = mkOption {
      type = types.listOf types.str;
      default = [ "https://cache.nixos.org" ];
      description = "Upstream caches, tried in order. An empty list serves only what is stored (`no-upstream`).";
    };

    cacheDir = mkOption {
      type = types.strMatching "/var/cache/.+";
      default = "/var/cache/narbor";
      description = ''
        Where cached objects live. Must be under /var/cache: systemd creates it
        for the service's dynamic user (CacheDirectory=).
      '';
    };

    maxSize = mkOption {
      type = types.str;
      default = "200G";
      example = "500G";
      description = "Most disk space the cache may use (K/M/G/T, powers of 1024); least recently used objects are evicted.";
    };

    priority = mkOption {
      type = types.ints.unsigned;
      default = 30;
      description = "Priority in /nix-cache-info; lower is asked first (cache.nixos.org says 40).";
    };

    lanMode = mkOption {
      type = types.bool;
      default = false;
      description = ''
        LAN mode for a trusted network: listen on every interface (port 80
        unless `listen` says otherwise), plain HTTP, public stats, and an
        mDNS/DNS-SD advertisement. Opens the firewall for the port and mDNS
        (UDP 5353) unless `openFirewall` is set to false.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = cfg.lanMode;
      defaultText = literalExpression "config.services.narbor.lanMode";
      description = "Open the TCP ports narbor listens on (and, in LAN mode, UDP 5353 for mDNS).";
    };

    statsPublic = mkOption {
      type = types.bool;
      default = cfg.lanMode;
      defaultText = literalExpression "config.services.narbor.lanMode";
      description = "Answer /status, /status.json and /metrics to every client, not only loopback.";
    };

    trustedKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
      description = "When non-empty, a narinfo without a valid signature by one of these keys is neither cached nor served.";
    };

    netrcFile = mkOption {
      type = secretPath;
      default = null;
      example = "/run/secrets/narbor-netrc";
      description = ''
        A netrc file, in the format of Nix's `netrc-file`
        (`machine HOST login USER password PASS`): HTTP Basic credentials for
        upstreams whose URL carries none (cachix and attic take their token
        as the password). Handed to the service with LoadCredential, so it
        may be readable by root only.
      '';
    };

    upstreamTokenFiles = mkOption {
      type = types.attrsOf (types.strMatching "/.*");
      default = { };
      example = {
        "attic.example.org" = "/run/secrets/attic-token";
      };
      description = ''
        Files holding a bearer token, by upstream host: narbor sends it as
        `Authorization: Bearer` to that host only. Handed to the service with
        LoadCredential.
      '';
    };

    signKeyFile = mkOption {
      type = secretPath;
      default = null;
      example = "/run/secrets/narbor-signing-key";
      description = ''
        Secret key (from `narbor keygen`) to add narbor's signature to each
        narinfo it stores. Handed to the service with LoadCredential, so it may
        be readable by root only.
      '';
    };

    tls = {
      certificateFile = mkOption {
        type = secretPath;
        default = null;
        description = "PEM certificate chain for HTTPS (with `keyFile`). Loaded with LoadCredential: replace it, then restart narbor.";
      };
      keyFile = mkOption {
        type = secretPath;
        default = null;
        description = "PEM private key for HTTPS. Loaded with LoadCredential, so it may be readable by root only.";
      };
      useACMEHost = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "cache.example.org";
        description = ''
          Serve HTTPS with the certificate of `security.acme.certs.<name>`
          (configured elsewhere). narbor reads /var/lib/acme/<name>/fullchain.pem
          and key.pem through the certificate's group, and reloads (SIGHUP) on
          renewal without dropping connections.
        '';
      };
      enableACME = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Request a certificate for `tls.domain` with `security.acme` and serve
          HTTPS with it. narbor does not answer ACME challenges itself: choose
          the challenge in `security.acme.certs.<domain>` (`dnsProvider`,
          `webroot`, or `listenHTTP` when port 80 is free), and in
          `security.acme` accept the terms (`acceptTerms`) and give an email
          (`defaults.email`): the ACME module's assertions require all three.
        '';
      };
      domain = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "cache.example.org";
        description = "The name to request a certificate for with `enableACME`.";
      };
      redirectListen = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "0.0.0.0:80" ];
        description = "Plain-HTTP listeners that redirect to HTTPS (`http-redirect-listen`).";
      };
    };

    oci = {
      store = mkOption {
        type = types.nullOr (types.strMatching "oci(\\+http)?://.+");
        default = null;
        example = "oci://ghcr.io/owner/repo/nix-cache";
        description = "An OCI registry store to serve from (`narbor push` publishes into it).";
      };
      username = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = ''
          Registry user name (NARBOR_REGISTRY_USERNAME); the token file is then
          its password. `null`: the token is passed as GITHUB_TOKEN, which
          narbor uses for ghcr.io.
        '';
      };
      tokenFile = mkOption {
        type = secretPath;
        default = null;
        example = "/run/secrets/ghcr-token";
        description = ''
          File holding the registry token (for a private GHCR package: a token
          with read:packages). Loaded with LoadCredential and read into the
          environment at start; it never enters the Nix store, the unit or the
          command line.
        '';
      };
      refreshTokenFile = mkOption {
        type = secretPath;
        default = null;
        description = "File holding a bearer token that lets non-loopback clients POST /_refresh.";
      };
    };

    environmentFile = mkOption {
      type = secretPath;
      default = null;
      description = ''
        systemd EnvironmentFile= with further variables for narbor (e.g.
        NARBOR_REGISTRY_USERNAME and NARBOR_REGISTRY_PASSWORD). Read by systemd
        as root, so it may be readable by root only.
      '';
    };

    settings = mkOption {
      type = types.submodule { freeformType = settingsFormat.type; };
      default = { };
      example = {
        inactive = "14d";
        log = "narbor=debug";
      };
      description = ''
        narbor's config file (packaging/narbor.toml lists every key). The
        options above set their keys with mkDefault, so a key given here wins.
      '';
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Extra arguments for `narbor serve`; flags override the config file.";
    };

    useAsSubstituter = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = "Add this narbor to the host's own `nix.settings.substituters`.";
      };
      url = mkOption {
        type = types.str;
        default = defaultUrl;
        defaultText = literalMD "`http://` and the first `listen` address (a wildcard address becomes loopback); with TLS `https://` and the ACME name";
        description = "The URL the host's Nix uses to reach narbor.";
      };
      trustedPublicKeys = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = ''
          Keys to add to `nix.settings.trusted-public-keys`: the public half of
          `signKeyFile`, and the keys of an OCI store's publisher. Paths pulled
          through from cache.nixos.org keep its signature, which NixOS already
          trusts.
        '';
      };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = (cfg.tls.certificateFile == null) == (cfg.tls.keyFile == null);
          message = "services.narbor.tls: set both certificateFile and keyFile, or neither.";
        }
        {
          assertion = !(tlsFromFiles && acmeHost != null);
          message = "services.narbor.tls: use either certificate files or ACME, not both.";
        }
        {
          assertion = !(cfg.tls.useACMEHost != null && cfg.tls.enableACME);
          message = "services.narbor.tls: useACMEHost and enableACME exclude each other.";
        }
        {
          assertion = cfg.tls.enableACME -> cfg.tls.domain != null;
          message = "services.narbor.tls.enableACME needs tls.domain.";
        }
        {
          assertion = cfg.tls.redirectListen != [ ] -> tlsEnabled;
          message = "services.narbor.tls.redirectListen redirects to HTTPS: configure TLS too.";
        }
        {
          assertion = (cfg.oci.tokenFile != null || cfg.oci.username != null) -> cfg.oci.store != null;
          message = "services.narbor.oci: tokenFile and username need oci.store.";
        }
      ];

      services.narbor.settings = mapAttrs (_: mkDefault) generated;

      systemd.services.narbor = {
        description = "narbor Nix binary cache";
        documentation = [ "https://github.com/narbor/narbor" ];
        wantedBy = [ "multi-user.target" ];
        # acme-<cert>.service (oneshot, RemainAfterExit) puts a certificate in
        # place (self-signed until the CA's arrives), so narbor can start after
        # it; the CA's certificate, and every renewal, comes by reloadServices
        # below. nixpkgs has no acme-finished-<cert>.target any more (PR
        # #422076, 2025), and systemd counts a missing unit as done.
        wants = [ "network-online.target" ] ++ optional (acmeHost != null) "acme-${acmeHost}.service";
        after = [ "network-online.target" ] ++ optional (acmeHost != null) "acme-${acmeHost}.service";
        environment = optionalAttrs (cfg.oci.username != null) {
          NARBOR_REGISTRY_USERNAME = cfg.oci.username;
        };

        serviceConfig = {
          Type = "exec";
          ExecStart = startScript;
          Restart = "on-failure";
          RestartSec = "5s";
          # narbor drains on SIGTERM: in-flight transfers get this long.
          TimeoutStopSec = "60s";
          LoadCredential = credentials;
          EnvironmentFile = optional (cfg.environmentFile != null) cfg.environmentFile;

          DynamicUser = true;
          CacheDirectory = removePrefix "/var/cache/" cfg.cacheDir;
          CacheDirectoryMode = "0700";
          UMask = "0077";
          # ACME certificates are readable by their group.
          SupplementaryGroups = optional (acmeHost != null) config.security.acme.certs.${acmeHost}.group;

          NoNewPrivileges = true;
          # The whole file system is read-only but for the cache directory;
          # /home, /root and /run/user are not visible at all.
          ProtectSystem = "strict";
          ProtectHome = true;
          ReadOnlyPaths = [ "/etc" ];
          PrivateTmp = true;
          PrivateDevices = true;
          ProtectKernelTunables = true;
          ProtectKernelModules = true;
          ProtectKernelLogs = true;
          ProtectControlGroups = true;
          ProtectClock = true;
          ProtectHostname = true;
          ProtectProc = "invisible";
          ProcSubset = "pid";
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          LockPersonality = true;
          MemoryDenyWriteExecute = true;
          RemoveIPC = true;
          SystemCallArchitectures = "native";
          SystemCallFilter = [
            "@system-service"
            "~@privileged"
          ];
          SystemCallErrorNumber = "EPERM";
          # mDNS in LAN mode enumerates interfaces over netlink.
          RestrictAddressFamilies = [
            "AF_INET"
            "AF_INET6"
            "AF_UNIX"
          ] ++ optional cfg.lanMode "AF_NETLINK";
          # No capabilities at all, unless a port below 1024 must be bound.
          CapabilityBoundingSet = if bindsLowPort then "CAP_NET_BIND_SERVICE" else "";
          AmbientCapabilities = optional bindsLowPort "CAP_NET_BIND_SERVICE";
        }
        // optionalAttrs tlsEnabled {
          # SIGHUP: read the certificate and key again, keep connections.
          # (Without TLS narbor has nothing to reload.)
          ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        };
      };

      networking.firewall = mkIf cfg.openFirewall {
        allowedTCPPorts = ports;
        allowedUDPPorts = optional cfg.lanMode 5353;
      };
    }

    (mkIf (acmeHost != null) {
      # acme-order-renew-<cert>.service runs `systemctl try-reload-or-restart`
      # on these after a new certificate: ExecReload (SIGHUP) above, so
      # connections stay open.
      security.acme.certs.${acmeHost} = {
        reloadServices = [ "narbor.service" ];
      };
    })

    (mkIf cfg.useAsSubstituter.enable {
      nix.settings = {
        substituters = [ cfg.useAsSubstituter.url ];
        trusted-public-keys = cfg.useAsSubstituter.trustedPublicKeys;
      };
    })
  ]);
}
