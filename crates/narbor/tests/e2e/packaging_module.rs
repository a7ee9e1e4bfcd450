//! The NixOS module `services.narbor`, evaluated offline against real
//! nixpkgs code: `module-nixpkgs.nix` hands `nix/module.nix` to the example
//! harness of `../shared/fixtures/nixpkgs-subset` (nixpkgs' own lib and
//! module system, and the real firewall, nix.settings, security.acme and
//! systemd unit rendering; stub packages, nothing is built), and Nix 2.8
//! evaluates it. Checked: the config keys it writes, the unit's hardening,
//! the firewall, ACME (the units narbor waits for exist), the host's
//! substituters, that secrets travel only by LoadCredential, and that the
//! start script really moves the registry token into the environment (run
//! with bash). The flake's VM test covers the running service.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::packaging::{nix_eval_json, repo_root};
use crate::packaging_keys::check_config_types;
use crate::support::{nix_string, run_ok, stderr_str, stdout_str};

/// The nixpkgs subset, beside the repository (`../shared`, as in CI). The
/// tests only read it; a missing one fails them with this message.
fn nixpkgs_subset() -> PathBuf {
    let dir = repo_root().join("../shared/fixtures/nixpkgs-subset");
    for file in [
        "example-harness/eval.nix",
        "lib/default.nix",
        "nixos/modules/security/acme/default.nix",
    ] {
        assert!(
            dir.join(file).is_file(),
            "the nixpkgs subset fixture is missing: no {file} in {}. The NixOS \
             module tests evaluate nix/module.nix with its real nixpkgs code (lib, \
             firewall, nix.conf, ACME, systemd); it belongs at \
             ../shared/fixtures/nixpkgs-subset, beside the repository",
            dir.display()
        );
    }
    dir.canonicalize().expect("nixpkgs subset")
}

/// `module-nixpkgs.nix` over the fixture's configuration `base`, with these
/// `services.narbor` values and `extra` NixOS configuration (Nix attrsets).
fn harness(base: &str, user: &str, extra: &str) -> String {
    let fixture = nixpkgs_subset();
    format!(
        "import ./crates/narbor/tests/e2e/module-nixpkgs.nix {{ fixture = {}; base = {}; \
         user = {user}; extra = {extra}; }}",
        nix_string(fixture.to_str().expect("UTF-8 path")),
        nix_string(base),
    )
}

/// `nix-instantiate --eval --strict --json` of `expr`. Forcing the unit
/// instantiates stub derivations, so Nix needs its local store (root).
fn nix_eval(expr: &str) -> Command {
    let mut cmd = Command::new("nix-instantiate");
    cmd.current_dir(repo_root())
        .env("NIX_REMOTE", "local")
        .env_remove("NIX_PATH")
        .args(["--eval", "--strict", "--json", "--expr", expr]);
    cmd
}

fn eval_json(expr: &str) -> Value {
    let out = run_ok(&mut nix_eval(expr));
    serde_json::from_slice(&out.stdout).expect("nix-instantiate printed JSON")
}

/// The module evaluated with these `services.narbor` values (a Nix attrset).
pub fn eval(user: &str) -> Value {
    eval_with(user, "{ }")
}

/// The same, with `extra` NixOS configuration beside it.
fn eval_with(user: &str, extra: &str) -> Value {
    let result = eval_json(&harness("defaultFromPkgs", user, extra));
    let settings = result["settings"].as_object().expect("settings").clone();
    check_config_types(&settings);
    result
}

/// Evaluating the module with these values fails; returns the error.
fn eval_error(user: &str) -> String {
    let out: Output = nix_eval(&harness("defaultFromPkgs", user, "{ }"))
        .output()
        .expect("nix-instantiate");
    assert!(
        !out.status.success(),
        "{user} evaluated: {}",
        stdout_str(&out)
    );
    stderr_str(&out)
}

/// What NixOS itself puts in nix.conf; the real nix.nix appends it to any
/// `nix.settings` the module sets.
const NIXOS_SUBSTITUTER: &str = "https://cache.nixos.org/";
const NIXOS_KEY: &str = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

/// The `KEY=` lines of a rendered unit, values in order.
fn unit_lines<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

#[test]
fn defaults_are_hardened_and_change_nothing_else() {
    let r = eval("{ enable = true; }");
    assert_eq!(r["failedAssertions"], json!([]));
    assert_eq!(
        r["settings"],
        json!({
            "cache-dir": "/var/cache/narbor",
            "http-redirect-listen": [],
            "lan": false,
            "max-size": "200G",
            "no-upstream": false,
            "priority": 30,
            "stats-public": false,
            "trusted-keys": [],
            "upstreams": ["https://cache.nixos.org"]
        }),
        "no `listen`: narbor's own default (loopback) applies"
    );
    let sc = &r["service"]["serviceConfig"];
    for (key, value) in [
        ("DynamicUser", json!(true)),
        ("CacheDirectory", json!("narbor")),
        ("NoNewPrivileges", json!(true)),
        ("ProtectSystem", json!("strict")),
        ("ProtectHome", json!(true)),
        ("PrivateTmp", json!(true)),
        ("PrivateDevices", json!(true)),
        ("ProtectKernelTunables", json!(true)),
        ("ProtectKernelModules", json!(true)),
        ("ProtectKernelLogs", json!(true)),
        ("ReadOnlyPaths", json!(["/etc"])),
        (
            "SystemCallFilter",
            json!(["@system-service", "~@privileged"]),
        ),
        (
            "RestrictAddressFamilies",
            json!(["AF_INET", "AF_INET6", "AF_UNIX"]),
        ),
        ("CapabilityBoundingSet", json!("")),
        ("AmbientCapabilities", json!([])),
        ("LoadCredential", json!([])),
    ] {
        assert_eq!(sc[key], value, "{key}");
    }
    // SIGHUP reloads TLS files; without TLS there is no reload at all.
    assert!(sc.get("ExecReload").is_none());
    // No port opened, the host's Nix as NixOS sets it up, no certificate,
    // no unit but narbor's.
    assert_eq!(r["firewall"], json!({ "tcp": [], "udp": [] }));
    assert_eq!(
        r["nixSettings"],
        json!({ "substituters": [NIXOS_SUBSTITUTER], "trusted-public-keys": [NIXOS_KEY] })
    );
    assert_eq!(r["acme"], json!({}));
    assert_eq!(r["units"], json!(["narbor.service"]));
    // The package's narbor, with the config file made from these settings.
    let script = r["startScript"].as_str().unwrap();
    let exec = format!(
        "exec {}/bin/narbor serve --config {} \n",
        r["package"].as_str().unwrap(),
        r["configFile"].as_str().unwrap()
    );
    assert!(script.ends_with(&exec), "{script}");

    let off = eval_json(&harness("disabled", "{ }", "{ }"));
    assert_eq!(off["service"], Value::Null, "disabled: no service");
    assert_eq!(off["units"], json!([]), "disabled: no unit at all");
}

#[test]
fn lan_mode_binds_port_80_and_opens_it_and_mdns() {
    let r = eval("{ enable = true; lanMode = true; }");
    assert_eq!(r["settings"]["lan"], json!(true));
    assert_eq!(
        r["settings"]["stats-public"],
        json!(true),
        "LAN mode: public stats"
    );
    assert!(r["settings"].get("listen").is_none());
    assert_eq!(r["firewall"], json!({ "tcp": [80], "udp": [5353] }));
    let sc = &r["service"]["serviceConfig"];
    assert_eq!(sc["CapabilityBoundingSet"], json!("CAP_NET_BIND_SERVICE"));
    assert_eq!(sc["AmbientCapabilities"], json!(["CAP_NET_BIND_SERVICE"]));
    assert_eq!(
        sc["RestrictAddressFamilies"],
        json!(["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"])
    );

    // Its own port above 1024: no capability; the firewall can stay closed.
    let r = eval(
        r#"{ enable = true; lanMode = true; listen = [ "0.0.0.0:8080" ]; openFirewall = false; }"#,
    );
    assert_eq!(
        r["service"]["serviceConfig"]["CapabilityBoundingSet"],
        json!("")
    );
    assert_eq!(r["firewall"], json!({ "tcp": [], "udp": [] }));
    assert_eq!(r["settings"]["listen"], json!(["0.0.0.0:8080"]));
}

const SECRETS: &str = r#"{
  enable = true;
  oci.store = "oci://ghcr.io/owner/repo/nix-cache";
  oci.tokenFile = "/run/secrets/registry-token";
  oci.refreshTokenFile = "/run/secrets/refresh-token";
  signKeyFile = "/run/secrets/signing-key";
  netrcFile = "/run/secrets/netrc";
  upstreamTokenFiles = {
    "b.example.org" = "/run/secrets/b-token";
    "a.example.org" = "/run/secrets/a-token";
  };
  tls.certificateFile = "/run/secrets/cert.pem";
  tls.keyFile = "/run/secrets/key.pem";
  listen = [ "0.0.0.0:8443" ];
}"#;

#[test]
fn secrets_travel_only_by_load_credential() {
    let r = eval(SECRETS);
    assert_eq!(r["failedAssertions"], json!([]));
    let sc = &r["service"]["serviceConfig"];
    let credentials = [
        "registry-token:/run/secrets/registry-token",
        "netrc:/run/secrets/netrc",
        "upstream-token-0:/run/secrets/a-token",
        "upstream-token-1:/run/secrets/b-token",
        "refresh-token:/run/secrets/refresh-token",
        "sign-key:/run/secrets/signing-key",
        "tls-cert:/run/secrets/cert.pem",
        "tls-key:/run/secrets/key.pem",
    ];
    assert_eq!(sc["LoadCredential"], json!(credentials));
    let unit = r["unitText"].as_str().unwrap();
    assert_eq!(unit_lines(unit, "LoadCredential"), credentials, "{unit}");
    let creds = "/run/credentials/narbor.service";
    let s = &r["settings"];
    assert_eq!(s["oci"], json!("oci://ghcr.io/owner/repo/nix-cache"));
    assert_eq!(s["sign-key-file"], json!(format!("{creds}/sign-key")));
    assert_eq!(
        s["refresh-token-file"],
        json!(format!("{creds}/refresh-token"))
    );
    assert_eq!(s["netrc-file"], json!(format!("{creds}/netrc")));
    assert_eq!(
        s["upstream-token-files"],
        json!([
            format!("a.example.org={creds}/upstream-token-0"),
            format!("b.example.org={creds}/upstream-token-1")
        ])
    );
    assert_eq!(s["tls-cert"], json!(format!("{creds}/tls-cert")));
    assert_eq!(s["tls-key"], json!(format!("{creds}/tls-key")));
    assert!(sc["ExecReload"]
        .as_str()
        .unwrap()
        .ends_with("kill -HUP $MAINPID"));
    // The secret files are named nowhere but in LoadCredential: not in the
    // settings, the start script, the environment, the rest of the unit file.
    let mut elsewhere = r.clone();
    elsewhere["service"]["serviceConfig"]["LoadCredential"] = Value::Null;
    elsewhere["unitText"] = json!(unit
        .lines()
        .filter(|l| !l.starts_with("LoadCredential="))
        .collect::<Vec<_>>());
    assert!(
        !elsewhere.to_string().contains("/run/secrets/"),
        "{elsewhere}"
    );
}

/// Runs the module's start script with a credentials directory holding
/// `token`, with `env` in place of narbor; returns the environment it got.
fn start_env(user: &str, token: &str) -> String {
    let r = eval(user);
    let script = r["startScript"].as_str().unwrap();
    let (head, exec) = script.rsplit_once("exec ").unwrap();
    assert!(exec.contains("/bin/narbor serve --config "), "{exec}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry-token"), token).unwrap();
    let out = run_ok(
        Command::new("bash")
            .arg("-c")
            .arg(format!("{head}exec env"))
            .env_clear()
            .env("CREDENTIALS_DIRECTORY", dir.path()),
    );
    stdout_str(&out)
}

#[test]
fn start_script_moves_the_token_into_the_environment() {
    let env = start_env(SECRETS, "ghp_secret123\n");
    assert!(
        env.lines().any(|l| l == "GITHUB_TOKEN=ghp_secret123"),
        "{env}"
    );
    assert!(!env.contains("NARBOR_REGISTRY_PASSWORD"), "{env}");

    let with_user = SECRETS.replace("enable = true;", "enable = true; oci.username = \"bot\";");
    let env = start_env(&with_user, "s3cret");
    assert!(
        env.lines().any(|l| l == "NARBOR_REGISTRY_PASSWORD=s3cret"),
        "{env}"
    );
    assert!(!env.contains("GITHUB_TOKEN"), "{env}");
    let r = eval(&with_user);
    // NixOS adds PATH (coreutils, findutils, grep, sed, systemd) to every unit.
    let mut environment = r["service"]["environment"].clone();
    assert!(environment["PATH"].is_string(), "{environment}");
    environment.as_object_mut().unwrap().remove("PATH");
    assert_eq!(environment, json!({ "NARBOR_REGISTRY_USERNAME": "bot" }));
    let unit = r["unitText"].as_str().unwrap();
    assert!(
        unit_lines(unit, "Environment").contains(&"\"NARBOR_REGISTRY_USERNAME=bot\""),
        "{unit}"
    );

    // Without a token file the script exports nothing.
    let env = start_env("{ enable = true; }", "unused");
    assert!(!env.contains("unused") && !env.contains("TOKEN"), "{env}");
}

/// `security.acme` for one certificate as the real ACME module requires it:
/// the CA's terms accepted, an email, and exactly one way to answer the
/// challenge (narbor answers none itself).
fn acme_config(cert: &str, challenge: &str) -> String {
    format!(
        r#"{{ security.acme = {{ acceptTerms = true; defaults.email = "admin@example.org";
             certs.{}.{challenge}; }}; }}"#,
        nix_string(cert)
    )
}

const ACME_HOST: &str = r#"{ enable = true; tls.useACMEHost = "cache.example.org";
     listen = [ "0.0.0.0:443" "[::]:443" ]; tls.redirectListen = [ "0.0.0.0:80" ];
     openFirewall = true; useAsSubstituter.enable = true; }"#;
const ENABLE_ACME: &str =
    r#"{ enable = true; tls.enableACME = true; tls.domain = "c.example.org"; }"#;

#[test]
fn acme_certificate_is_read_through_its_group_and_reloads() {
    let r = eval_with(
        ACME_HOST,
        &acme_config("cache.example.org", r#"dnsProvider = "rfc2136""#),
    );
    assert_eq!(r["failedAssertions"], json!([]));
    let dir = "/var/lib/acme/cache.example.org";
    assert_eq!(
        r["settings"]["tls-cert"],
        json!(format!("{dir}/fullchain.pem"))
    );
    assert_eq!(r["settings"]["tls-key"], json!(format!("{dir}/key.pem")));
    assert_eq!(r["settings"]["http-redirect-listen"], json!(["0.0.0.0:80"]));
    let sc = &r["service"]["serviceConfig"];
    assert_eq!(sc["SupplementaryGroups"], json!(["acme"]));
    assert_eq!(sc["LoadCredential"], json!([]));
    assert!(sc["ExecReload"].is_string());
    assert_eq!(
        r["acme"],
        json!({ "cache.example.org": { "group": "acme", "reloadServices": ["narbor.service"] } })
    );
    // Started once acme-<cert>.service has put a certificate in place.
    let cert_unit = json!("acme-cache.example.org.service");
    for key in ["after", "wants"] {
        let units = r["service"][key].as_array().unwrap();
        assert!(units.contains(&cert_unit), "{key}: {units:?}");
    }
    let unit = r["unitText"].as_str().unwrap();
    for key in ["After", "Wants"] {
        assert_eq!(
            unit_lines(unit, key),
            ["network-online.target acme-cache.example.org.service"],
            "{unit}"
        );
    }
    // The real firewall sorts its ports.
    assert_eq!(r["firewall"], json!({ "tcp": [80, 443], "udp": [] }));
    assert_eq!(sc["AmbientCapabilities"], json!(["CAP_NET_BIND_SERVICE"]));
    assert_eq!(
        r["nixSettings"]["substituters"],
        json!(["https://cache.example.org", NIXOS_SUBSTITUTER])
    );

    let r = eval_with(
        ENABLE_ACME,
        &acme_config("c.example.org", r#"listenHTTP = ":80""#),
    );
    assert_eq!(r["failedAssertions"], json!([]));
    assert_eq!(
        r["acme"]["c.example.org"]["reloadServices"],
        json!(["narbor.service"])
    );
}

/// nixpkgs no longer defines `acme-finished-<cert>.target` (PR #422076,
/// 2025), and systemd counts a unit that does not exist as done: a narbor
/// waiting for it could start before its certificate existed. Every ACME unit
/// narbor wants or is ordered after must be one the real ACME module defines.
#[test]
fn acme_units_narbor_waits_for_exist() {
    for (user, cert, challenge) in [
        (
            ACME_HOST,
            "cache.example.org",
            r#"webroot = "/var/lib/acme/acme-challenge""#,
        ),
        (ENABLE_ACME, "c.example.org", r#"listenHTTP = ":80""#),
    ] {
        let r = eval_with(user, &acme_config(cert, challenge));
        assert_eq!(r["failedAssertions"], json!([]));
        let units = r["units"].as_array().unwrap();
        let named: Vec<&Value> = ["after", "wants"]
            .iter()
            .flat_map(|key| r["service"][key].as_array().unwrap())
            .filter(|unit| unit.as_str().unwrap().starts_with("acme"))
            .collect();
        assert!(!named.is_empty(), "{user}: narbor waits for no ACME unit");
        for unit in named {
            assert!(
                units.contains(unit),
                "narbor.service names {unit}, which the ACME module does not define; \
                 the units are {}",
                r["units"]
            );
        }
    }
}

#[test]
fn substituter_url_follows_listen() {
    let r = eval(
        r#"{ enable = true; useAsSubstituter.enable = true;
             useAsSubstituter.trustedPublicKeys = [ "narbor-1:AAAA" ]; }"#,
    );
    // NixOS's own substituter and key come after narbor's.
    assert_eq!(
        r["nixSettings"],
        json!({
            "substituters": ["http://127.0.0.1:37515", NIXOS_SUBSTITUTER],
            "trusted-public-keys": ["narbor-1:AAAA", NIXOS_KEY]
        })
    );
    let conf = r["nixConf"].as_str().unwrap();
    for line in [
        format!("substituters = http://127.0.0.1:37515 {NIXOS_SUBSTITUTER}"),
        format!("trusted-public-keys = narbor-1:AAAA {NIXOS_KEY}"),
    ] {
        assert!(conf.lines().any(|l| l == line), "{line:?} not in\n{conf}");
    }
    let r = eval(r#"{ enable = true; useAsSubstituter.enable = true; listen = [ "[::]:8080" ]; }"#);
    assert_eq!(
        r["nixSettings"]["substituters"],
        json!(["http://[::1]:8080", NIXOS_SUBSTITUTER])
    );
    let r = eval(r#"{ enable = true; useAsSubstituter.enable = true; lanMode = true; }"#);
    assert_eq!(
        r["nixSettings"]["substituters"],
        json!(["http://127.0.0.1:80", NIXOS_SUBSTITUTER])
    );
}

#[test]
fn settings_override_and_extend_the_options() {
    let r = eval(
        r#"{ enable = true; maxSize = "10G"; upstreams = [ ];
             settings = { max-size = "1T"; log = "narbor=debug"; inactive = "14d"; }; }"#,
    );
    let s = &r["settings"];
    assert_eq!(s["max-size"], json!("1T"), "settings win over options");
    assert_eq!(s["log"], json!("narbor=debug"));
    assert_eq!(s["inactive"], json!("14d"));
    assert_eq!(s["no-upstream"], json!(true), "no upstreams: no-upstream");
    assert!(s.get("upstreams").is_none());
}

#[test]
fn contradictions_and_bad_values_are_refused() {
    for (user, message) in [
        (
            r#"tls.certificateFile = "/k/cert";"#,
            "set both certificateFile and keyFile",
        ),
        (
            r#"tls.useACMEHost = "a.example"; tls.enableACME = true; tls.domain = "a.example";"#,
            "useACMEHost and enableACME exclude each other",
        ),
        ("tls.enableACME = true;", "enableACME needs tls.domain"),
        (
            r#"tls.redirectListen = [ "0.0.0.0:80" ];"#,
            "configure TLS too",
        ),
        (
            r#"oci.tokenFile = "/run/secrets/t";"#,
            "tokenFile and username need oci.store",
        ),
    ] {
        let expr = harness(
            "defaultFromPkgs",
            &format!("{{ enable = true; {user} }}"),
            "{ }",
        );
        let r = eval_json(&format!("({expr}).failedAssertions"));
        let failed = r.as_array().unwrap();
        assert!(
            failed.iter().any(|m| m.as_str().unwrap().contains(message)),
            "{user}: {failed:?}"
        );
    }
    for (user, option) in [
        (r#"cacheDir = "/srv/narbor";"#, "cacheDir"),
        (r#"oci.store = "https://ghcr.io/o/r";"#, "oci.store"),
        // A relative path, or a Nix path literal that would copy the secret into the store.
        (r#"signKeyFile = "key";"#, "signKeyFile"),
        ("oci.tokenFile = ./flake.nix;", "oci.tokenFile"),
        (r#"priority = "30";"#, "priority"),
    ] {
        let error = eval_error(&format!("{{ enable = true; {user} }}"));
        let message = format!("A definition for option `services.narbor.{option}' is not of type");
        assert!(error.contains(&message), "{user}: {error}");
    }
    let error = eval_error("{ enable = true; listenn = [ ]; }");
    assert!(
        error.contains("The option `services.narbor.listenn' does not exist."),
        "{error}"
    );
}

/// flake.nix over a stand-in nixpkgs (`flake-eval.nix`): what the package
/// asks buildRustPackage for, the overlay, and nixosModules.default.
#[test]
fn flake_outputs_build_this_workspace() {
    let root = repo_root();
    let r = nix_eval_json("import ./crates/narbor/tests/e2e/flake-eval.nix");
    for output in [
        "packages",
        "overlays",
        "nixosModules",
        "devShells",
        "checks",
    ] {
        assert!(
            r["outputNames"]
                .as_array()
                .unwrap()
                .contains(&json!(output)),
            "{output}"
        );
    }
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(cargo_toml.contains(&format!("version = \"{version}\"")));
    let at = |rel: &str| json!(root.join(rel).display().to_string());
    let expected = json!({
        "pname": "narbor",
        "version": version,
        "cargoBuildFlags": ["--package", "narbor"],
        "doCheck": false,
        "lockFile": at("Cargo.lock"),
        "srcRoot": root.display().to_string(),
        "srcFiles": [at("Cargo.toml"), at("Cargo.lock"), at("crates")],
        "mainProgram": "narbor",
        "license": ["MIT", "Apache-2.0"]
    });
    assert_eq!(r["packages"]["narbor"], expected);
    assert_eq!(r["packages"]["default"], expected);
    assert_eq!(r["overlay"], expected);
    assert_eq!(
        r["modulePackage"], expected,
        "the module defaults to the flake's package"
    );
    assert_eq!(
        r["modulePackagePriority"],
        json!("override"),
        "with mkDefault"
    );
    assert_eq!(r["moduleImports"], json!([at("nix/module.nix")]));
    assert_eq!(r["plainModule"], at("nix/module.nix"));
    assert_eq!(r["systems"], json!(["aarch64-linux", "x86_64-linux"]));
}
