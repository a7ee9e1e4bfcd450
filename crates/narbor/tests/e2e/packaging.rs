//! Packaging: the flake and NixOS module parse, the systemd unit verifies,
//! and the GitHub Actions workflows pass actionlint (with shellcheck) and
//! never put `${{ }}` expressions, secrets least of all, into a `run:`
//! script.
//!
//! No full nixpkgs exists offline, so nothing here builds the flake; what
//! Nix 2.8 can do alone (parse every file, evaluate the CI's installables
//! list) it does. `packaging_keys.rs` checks the example config, the docs'
//! table and the module's keys against narbor's own list of keys;
//! `packaging_module.rs` evaluates the module with a real subset of nixpkgs;
//! the flake's `checks.module` VM test covers the rest on a machine with
//! nixpkgs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{run_fails, run_ok, stderr_str, stdout_str};

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
