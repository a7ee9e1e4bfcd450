//! Packaging: the flake and NixOS module parse, the module's config keys and
//! the example config agree, the systemd unit verifies, and the GitHub
//! Actions workflows pass actionlint (with shellcheck) and never put
//! `${{ }}` expressions, secrets least of all, into a `run:` script.
//!
//! No full nixpkgs exists offline, so nothing here builds the flake; what
//! Nix 2.8 can do alone (parse every file, evaluate the CI's installables
//! list and the example config) it does. `packaging_module.rs` evaluates the
//! module with a real subset of nixpkgs; the flake's `checks.module` VM test
//! covers the rest on a machine with nixpkgs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{run_fails, run_ok, stderr_str, stdout_str};

/// Every key narbor's config file has (the lead's config loader reads them).
pub const CONFIG_KEYS: &[&str] = &[
    "listen",
    "cache-dir",
    "max-size",
    "inactive",
    "upstreams",
    "no-upstream",
    "netrc-file",
    "upstream-token-files",
    "priority",
    "narinfo-ttl",
    "negative-ttl",
    "upstream-timeout",
    "trusted-keys",
    "sign-key-file",
    "stats-public",
    "lan",
    "tls-cert",
    "tls-key",
    "http-redirect-listen",
    "oci",
    "index-ttl",
    "index-dir",
    "refresh-token-file",
    "log",
];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// Files under `dir` whose name ends with `suffix`, skipping build output and git.
fn files_ending(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "corpus" | "artifacts") {
                files_ending(&path, suffix, out);
            }
        } else if name.ends_with(suffix) {
            out.push(path);
        }
    }
    out.sort();
}

/// Evaluates a Nix expression strictly, returning its JSON value.
pub fn nix_eval_json(expr: &str) -> serde_json::Value {
    let out = run_ok(
        Command::new("nix-instantiate")
            .current_dir(repo_root())
            .args(["--eval", "--strict", "--json", "--expr", expr]),
    );
    serde_json::from_slice(&out.stdout).expect("nix-instantiate printed JSON")
}

#[test]
fn every_nix_file_parses() {
    let root = repo_root();
    let mut files = Vec::new();
    files_ending(&root, ".nix", &mut files);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    for expected in ["flake.nix", "nix/module.nix", "nix/package.nix"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not found in {names:?}"
        );
    }
    let mut failures = Vec::new();
    for file in &files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(file)
            .output()
            .expect("nix-instantiate (Debian nix-bin; run scripts/test.sh)");
        if !out.status.success() {
            failures.push(format!("{}: {}", file.display(), stderr_str(&out)));
        }
    }
    assert!(
        failures.is_empty(),
        "unparsable Nix files:\n{}",
        failures.join("\n")
    );
}

/// The parse check above also rejects unbound names, as long as no `with`
/// hides them: the module binds every `lib` name explicitly.
#[test]
fn parsing_catches_a_misspelt_name_outside_with() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.nix");
    std::fs::write(
        &file,
        "{ lib, ... }: let inherit (lib) mkIf; in mkIff true { }\n",
    )
    .unwrap();
    let out = run_fails(Command::new("nix-instantiate").arg("--parse").arg(&file));
    assert!(
        stderr_str(&out).contains("undefined variable 'mkIff'"),
        "{}",
        stderr_str(&out)
    );
    for file in ["nix/module.nix", "nix/package.nix", "flake.nix"] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let code = text.lines().filter(|l| !l.trim_start().starts_with('#'));
        for line in code {
            assert!(
                !line.contains("with lib;"),
                "{file} uses `with lib;`: typos would parse"
            );
        }
    }
}

/// Panics unless every key is one narbor knows, with a value of its type.
pub fn check_config_types(config: &serde_json::Map<String, serde_json::Value>) {
    let lists = [
        "listen",
        "upstreams",
        "upstream-token-files",
        "trusted-keys",
        "http-redirect-listen",
    ];
    for (key, value) in config {
        assert!(
            CONFIG_KEYS.contains(&key.as_str()),
            "unknown config key {key}"
        );
        let ok = match key.as_str() {
            k if lists.contains(&k) => value
                .as_array()
                .is_some_and(|items| items.iter().all(serde_json::Value::is_string)),
            "no-upstream" | "stats-public" | "lan" => value.is_boolean(),
            "priority" => value.is_u64(),
            _ => value.is_string(),
        };
        assert!(ok, "{key} = {value} has the wrong type");
    }
}

/// The example config, with its commented-out keys uncommented, as parsed
/// by Nix's own TOML reader.
fn example_config(uncomment: bool) -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(repo_root().join("packaging/narbor.toml")).unwrap();
    let text: String = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if uncomment && rest.starts_with(|c: char| c.is_ascii_lowercase()) => {
                format!("{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("narbor.toml");
    std::fs::write(&file, text).unwrap();
    let expr = format!("builtins.fromTOML (builtins.readFile {})", file.display());
    match nix_eval_json(&expr) {
        serde_json::Value::Object(map) => map,
        other => panic!("not a table: {other}"),
    }
}

#[test]
fn example_config_has_every_key_with_its_type() {
    let all = example_config(true);
    let keys: Vec<&str> = all.keys().map(String::as_str).collect();
    let mut expected = CONFIG_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "packaging/narbor.toml keys");

    check_config_types(&all);

    // Without uncommenting: the defaults, and none of the keys that have none.
    let defaults = example_config(false);
    for optional in [
        "sign-key-file",
        "tls-cert",
        "tls-key",
        "oci",
        "refresh-token-file",
    ] {
        assert!(
            !defaults.contains_key(optional),
            "{optional} has no default"
        );
    }
    assert_eq!(defaults["listen"], serde_json::json!(["127.0.0.1:37515"]));
    assert_eq!(defaults["priority"], serde_json::json!(30));
    assert_eq!(
        defaults["upstreams"],
        serde_json::json!(["https://cache.nixos.org"])
    );
}

/// The keys the NixOS module writes into its generated config: the names in
/// its `generated` block. Each must be a key narbor knows.
#[test]
fn module_writes_only_known_config_keys() {
    let text = std::fs::read_to_string(repo_root().join("nix/module.nix")).unwrap();
    let start = text
        .find("  generated =")
        .expect("module has a `generated` block");
    let end = start + text[start..].find("\n\n").expect("end of `generated`");
    let mut written = BTreeMap::new();
    for line in text[start..end].lines() {
        // Every `NAME = ` on the line, NAME made of [a-z-].
        let mut rest = line;
        while let Some(at) = rest.find(" = ") {
            let before = &rest[..at];
            let name_start = before
                .rfind(|c: char| !(c.is_ascii_lowercase() || c == '-'))
                .map_or(0, |i| i + 1);
            let name = &before[name_start..];
            if name.contains('-') || CONFIG_KEYS.contains(&name) {
                written.insert(name.to_string(), ());
            }
            rest = &rest[at + 3..];
        }
    }
    for key in written.keys() {
        assert!(
            CONFIG_KEYS.contains(&key.as_str()),
            "module writes unknown key {key}"
        );
    }
    // The options the module exposes map to these keys.
    for key in [
        "listen",
        "cache-dir",
        "max-size",
        "upstreams",
        "no-upstream",
        "priority",
        "trusted-keys",
        "sign-key-file",
        "stats-public",
        "lan",
        "tls-cert",
        "tls-key",
        "http-redirect-listen",
        "oci",
        "refresh-token-file",
    ] {
        assert!(
            written.contains_key(key),
            "module never writes {key}: {written:?}"
        );
    }
}

#[test]
fn systemd_unit_verifies_cleanly() {
    let unit = std::fs::read_to_string(repo_root().join("packaging/narbor.service")).unwrap();
    let exec = "ExecStart=/usr/local/bin/narbor serve --config /etc/narbor/narbor.toml\n";
    assert!(
        unit.contains(exec),
        "the unit runs /usr/local/bin/narbor with /etc/narbor/narbor.toml"
    );
    for directive in [
        "DynamicUser=yes",
        "CacheDirectory=narbor",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive:?}");
    }
    // systemd-analyze checks that the binary exists: use this build's.
    let here = unit.replace("/usr/local/bin/narbor", env!("CARGO_BIN_EXE_narbor"));
    let out = verify_unit(&here);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{}",
        stderr_str(&out)
    );
    // An unknown or misspelt directive is only a warning: any output fails.
    assert_eq!(stderr_str(&out), "", "systemd-analyze verify warned");
    assert_eq!(stdout_str(&out), "");

    let typo = here.replace("ProtectHome=yes", "ProtectHomes=yes");
    let out = verify_unit(&typo);
    assert!(
        stderr_str(&out).contains("ProtectHomes"),
        "a typo must be reported: {}",
        stderr_str(&out)
    );
}

fn verify_unit(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("narbor.service");
    std::fs::write(&file, text).unwrap();
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .expect("systemd-analyze (Debian systemd; run scripts/test.sh)")
}

fn workflows() -> Vec<PathBuf> {
    let mut files = Vec::new();
    files_ending(&repo_root().join(".github/workflows"), ".yml", &mut files);
    assert!(files.len() >= 3, "push, update and gc workflows: {files:?}");
    files
}

#[test]
fn workflows_pass_actionlint_with_shellcheck() {
    // actionlint runs shellcheck on every `run:` script when it finds it; make sure it does.
    let shellcheck = run_ok(Command::new("sh").args(["-c", "command -v shellcheck"]));
    let shellcheck = stdout_str(&shellcheck).trim().to_string();
    let mut cmd = Command::new("actionlint");
    cmd.current_dir(repo_root())
        .arg(format!("-shellcheck={shellcheck}"))
        .args(workflows());
    run_ok(&mut cmd);
    // The scripts the workflows call.
    let mut scripts = Vec::new();
    files_ending(&repo_root().join(".github"), ".sh", &mut scripts);
    assert!(!scripts.is_empty());
    run_ok(Command::new(&shellcheck).args(&scripts));
}

#[test]
fn workflows_keep_expressions_and_secrets_out_of_scripts() {
    for file in workflows() {
        let text = std::fs::read_to_string(&file).unwrap();
        let problems = expression_problems(&text);
        assert!(
            problems.is_empty(),
            "{}:\n{}",
            file.display(),
            problems.join("\n")
        );
        assert!(
            text.contains("\nconcurrency:"),
            "{} has no concurrency group",
            file.display()
        );
        assert!(
            text.contains("\npermissions:"),
            "{} has no permissions",
            file.display()
        );
    }
}

/// Problems with `${{ }}` in a workflow: any expression inside a `run:`
/// script (it would be pasted into the shell source), and any secret outside
/// an `env:` mapping.
fn expression_problems(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut problems = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let key = line.trim_start().trim_start_matches("- ");
        if let Some(value) = key.strip_prefix("run:") {
            if value.contains("${{") {
                problems.push(format!("line {}: expression in run: {line}", i + 1));
            }
            // A block scalar: every following line indented deeper.
            let base = indent(line);
            let mut j = i + 1;
            while j < lines.len() && (lines[j].trim().is_empty() || indent(lines[j]) > base) {
                if lines[j].contains("${{") {
                    problems.push(format!("line {}: expression in run: {}", j + 1, lines[j]));
                }
                j += 1;
            }
            i = j;
            continue;
        }
        if line.contains("secrets.") {
            // The nearest less indented line must be `env:`.
            let parent = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty() && indent(l) < indent(line));
            let parent = parent
                .map(|l| l.trim().trim_start_matches("- "))
                .unwrap_or("");
            if parent != "env:" {
                problems.push(format!("line {}: secret outside env: {line}", i + 1));
            }
        }
        i += 1;
    }
    problems
}

#[test]
fn expression_scan_finds_what_it_must() {
    let bad = "jobs:\n  a:\n    steps:\n      - run: echo ${{ secrets.A }}\n      - name: b\n        run: |\n          echo ok\n          curl -H \"${{ github.event.issue.title }}\"\n      - with:\n          token: ${{ secrets.B }}\n";
    let problems = expression_problems(bad);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("line 4:"));
    assert!(problems[1].starts_with("line 8:"));
    assert!(problems[2].starts_with("line 10:"));
    let good = "jobs:\n  a:\n    steps:\n      - env:\n          T: ${{ secrets.A }}\n        run: |\n          echo \"$T\"\n      - if: ${{ github.ref == 'x' }}\n        run: true\n";
    assert_eq!(expression_problems(good), Vec::<String>::new());
}

/// The list of what CI builds, evaluated by Nix over a stand-in flake: every
/// package and dev shell of the runner's system, and the NixOS systems of
/// that platform only.
#[test]
fn ci_installables_cover_packages_systems_and_shells() {
    let expr = r#"import ./.github/narbor/installables.nix {
      system = "x86_64-linux";
      flake = {
        packages.x86_64-linux = { narbor = 1; default = 1; };
        packages.aarch64-linux = { narbor = 1; };
        devShells.x86_64-linux.default = 1;
        nixosConfigurations = {
          cache.pkgs.stdenv.hostPlatform.system = "x86_64-linux";
          pi.pkgs.stdenv.hostPlatform.system = "aarch64-linux";
        };
      };
    }"#;
    assert_eq!(
        nix_eval_json(expr),
        serde_json::json!({
            "build": [
                "packages.x86_64-linux.default",
                "packages.x86_64-linux.narbor",
                "nixosConfigurations.cache.config.system.build.toplevel"
            ],
            "shells": ["devShells.x86_64-linux.default"]
        })
    );
    // A flake with none of them builds nothing (and gc then refuses to run).
    let empty = nix_eval_json(
        r#"import ./.github/narbor/installables.nix { system = "x86_64-linux"; flake = { }; }"#,
    );
    assert_eq!(empty, serde_json::json!({ "build": [], "shells": [] }));
}

/// `CONFIG_KEYS` (and so the example config and the module) are exactly the
/// options `narbor serve` has: a new option cannot be left out of them.
#[test]
fn config_keys_are_exactly_the_serve_options() {
    let out = run_ok(crate::support::narbor().args(["serve", "--help"]));
    let mut from_help: Vec<String> = stdout_str(&out)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.trim_end_matches([',', '.', ')']).to_owned())
        .filter(|w| !w.is_empty() && !matches!(w.as_str(), "config" | "help" | "version"))
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .map(|w| match w.as_str() {
            "upstream" => "upstreams".to_owned(),
            "trusted-key" => "trusted-keys".to_owned(),
            "upstream-token-file" => "upstream-token-files".to_owned(),
            _ => w,
        })
        .collect();
    from_help.sort();
    from_help.dedup();
    let mut keys: Vec<String> = CONFIG_KEYS.iter().map(|k| k.to_string()).collect();
    keys.sort();
    assert_eq!(from_help, keys, "serve's flags and the config keys differ");
    // And narbor accepts the example config as shipped.
    run_ok(
        crate::support::narbor()
            .arg("check-config")
            .arg(repo_root().join("packaging/narbor.toml")),
    );
}
