//! The NixOS module `services.narbor`, evaluated offline: `module-eval.nix`
//! stands in for nixpkgs' `lib` and module system (nixpkgs cannot be had
//! here) and Nix 2.8 evaluates the real `nix/module.nix` with it. Checked:
//! the config keys it writes, the unit's hardening, the firewall, ACME,
//! the host's substituters, that secrets travel only by LoadCredential, and
//! that the start script really moves the registry token into the
//! environment (run with bash). The flake's VM test covers the real thing.

use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::packaging::{check_config_types, nix_eval_json, repo_root};
use crate::support::{run_ok, stderr_str, stdout_str};

/// The module evaluated with these `services.narbor` values (a Nix attrset).
fn eval(user: &str) -> Value {
    let result = nix_eval_json(&format!(
        "import ./crates/narbor/tests/e2e/module-eval.nix {{ user = {user}; }}"
    ));
    let settings = result["settings"].as_object().expect("settings").clone();
    check_config_types(&settings);
    result
}

/// Evaluating the module with these values fails; returns the error.
fn eval_error(user: &str) -> String {
    let out: Output = Command::new("nix-instantiate")
        .current_dir(repo_root())
        .args(["--eval", "--strict", "--json", "--expr"])
        .arg(format!(
            "import ./crates/narbor/tests/e2e/module-eval.nix {{ user = {user}; }}"
        ))
        .output()
        .expect("nix-instantiate");
    assert!(
        !out.status.success(),
        "{user} evaluated: {}",
        stdout_str(&out)
    );
    stderr_str(&out)
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
    assert_eq!(r["firewall"], Value::Null);
    assert_eq!(r["nixSettings"], Value::Null);
    assert_eq!(r["acme"], Value::Null);
    let script = r["startScript"].as_str().unwrap();
    let exec = format!(
        "exec /nix/store/00000000000000000000000000000000-narbor/bin/narbor serve --config {} \n",
        r["configFile"].as_str().unwrap()
    );
    assert!(script.ends_with(&exec), "{script}");

    let off = nix_eval_json("import ./crates/narbor/tests/e2e/module-eval.nix { user = { }; }");
    assert_eq!(off["service"], Value::Null, "disabled: no service");
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
    assert_eq!(
        r["firewall"],
        json!({ "allowedTCPPorts": [80], "allowedUDPPorts": [5353] })
    );
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
    assert_eq!(r["firewall"], Value::Null);
    assert_eq!(r["settings"]["listen"], json!(["0.0.0.0:8080"]));
}

const SECRETS: &str = r#"{
  enable = true;
  oci.store = "oci://ghcr.io/owner/repo/nix-cache";
  oci.tokenFile = "/run/secrets/registry-token";
  oci.refreshTokenFile = "/run/secrets/refresh-token";
  signKeyFile = "/run/secrets/signing-key";
  tls.certificateFile = "/run/secrets/cert.pem";
  tls.keyFile = "/run/secrets/key.pem";
  listen = [ "0.0.0.0:8443" ];
}"#;

#[test]
fn secrets_travel_only_by_load_credential() {
    let r = eval(SECRETS);
    assert_eq!(r["failedAssertions"], json!([]));
    let sc = &r["service"]["serviceConfig"];
    assert_eq!(
        sc["LoadCredential"],
        json!([
            "registry-token:/run/secrets/registry-token",
            "refresh-token:/run/secrets/refresh-token",
            "sign-key:/run/secrets/signing-key",
            "tls-cert:/run/secrets/cert.pem",
            "tls-key:/run/secrets/key.pem"
        ])
    );
    let creds = "/run/credentials/narbor.service";
    let s = &r["settings"];
    assert_eq!(s["oci"], json!("oci://ghcr.io/owner/repo/nix-cache"));
    assert_eq!(s["sign-key-file"], json!(format!("{creds}/sign-key")));
    assert_eq!(
        s["refresh-token-file"],
        json!(format!("{creds}/refresh-token"))
    );
    assert_eq!(s["tls-cert"], json!(format!("{creds}/tls-cert")));
    assert_eq!(s["tls-key"], json!(format!("{creds}/tls-key")));
    assert!(sc["ExecReload"]
        .as_str()
        .unwrap()
        .ends_with("kill -HUP $MAINPID"));
    // The secret files are named nowhere but in LoadCredential.
    let mut elsewhere = r.clone();
    elsewhere["service"]["serviceConfig"]["LoadCredential"] = Value::Null;
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
    assert_eq!(
        r["service"]["environment"],
        json!({ "NARBOR_REGISTRY_USERNAME": "bot" })
    );

    // Without a token file the script exports nothing.
    let env = start_env("{ enable = true; }", "unused");
    assert!(!env.contains("unused") && !env.contains("TOKEN"), "{env}");
}

#[test]
fn acme_certificate_is_read_through_its_group_and_reloads() {
    let r = eval(
        r#"{ enable = true; tls.useACMEHost = "cache.example.org";
             listen = [ "0.0.0.0:443" "[::]:443" ]; tls.redirectListen = [ "0.0.0.0:80" ];
             openFirewall = true; useAsSubstituter.enable = true; }"#,
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
        json!({ "cache.example.org": { "reloadServices": ["narbor.service"] } })
    );
    let after = r["service"]["after"].as_array().unwrap();
    assert!(after.contains(&json!("acme-cache.example.org.service")));
    assert_eq!(r["firewall"]["allowedTCPPorts"], json!([443, 80]));
    assert_eq!(r["firewall"]["allowedUDPPorts"], json!([]));
    assert_eq!(sc["AmbientCapabilities"], json!(["CAP_NET_BIND_SERVICE"]));
    assert_eq!(
        r["nixSettings"]["substituters"],
        json!(["https://cache.example.org"])
    );

    let r = eval(r#"{ enable = true; tls.enableACME = true; tls.domain = "c.example.org"; }"#);
    assert_eq!(
        r["acme"]["c.example.org"]["reloadServices"],
        json!(["narbor.service"])
    );
}

#[test]
fn substituter_url_follows_listen() {
    let r = eval(
        r#"{ enable = true; useAsSubstituter.enable = true;
             useAsSubstituter.trustedPublicKeys = [ "narbor-1:AAAA" ]; }"#,
    );
    assert_eq!(
        r["nixSettings"],
        json!({ "substituters": ["http://127.0.0.1:37515"], "trusted-public-keys": ["narbor-1:AAAA"] })
    );
    let r = eval(r#"{ enable = true; useAsSubstituter.enable = true; listen = [ "[::]:8080" ]; }"#);
    assert_eq!(
        r["nixSettings"]["substituters"],
        json!(["http://[::1]:8080"])
    );
    let r = eval(r#"{ enable = true; useAsSubstituter.enable = true; lanMode = true; }"#);
    assert_eq!(
        r["nixSettings"]["substituters"],
        json!(["http://127.0.0.1:80"])
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
        let r = nix_eval_json(&format!(
            "(import ./crates/narbor/tests/e2e/module-eval.nix {{ user = {{ enable = true; {user} }}; }}).failedAssertions"
        ));
        let failed = r.as_array().unwrap();
        assert!(
            failed.iter().any(|m| m.as_str().unwrap().contains(message)),
            "{user}: {failed:?}"
        );
    }
    for (user, option) in [
        (r#"cacheDir = "/srv/narbor";"#, "services.narbor.cacheDir"),
        (
            r#"oci.store = "https://ghcr.io/o/r";"#,
            "services.narbor.oci.store",
        ),
        // A relative path, or a Nix path literal that would copy the secret into the store.
        (r#"signKeyFile = "key";"#, "services.narbor.signKeyFile"),
        (
            "oci.tokenFile = ./module-eval.nix;",
            "services.narbor.oci.tokenFile",
        ),
        (r#"priority = "30";"#, "services.narbor.priority"),
        ("listenn = [ ];", "unknown option services.narbor.listenn"),
    ] {
        let error = eval_error(&format!("{{ enable = true; {user} }}"));
        assert!(error.contains(option), "{user}: {error}");
    }
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
