//! Keeps docs/architecture.md true: the protocol crate stays pure, and only the
//! binary uses `anyhow`.

use std::process::Command;

fn dependency_tree(package: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn crate_names(tree: &str) -> Vec<String> {
    tree.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn protocol_crate_has_no_runtime_sockets_or_anyhow() {
    let names = crate_names(&dependency_tree("narbor-proto"));
    assert!(
        names.iter().any(|n| n == "sha2"),
        "tree looks wrong: {names:?}"
    );
    for forbidden in [
        "tokio",
        "mio",
        "socket2",
        "hyper",
        "reqwest",
        "anyhow",
        "async-trait",
    ] {
        assert!(
            !names.iter().any(|n| n == forbidden),
            "narbor-proto depends on {forbidden}, which docs/architecture.md forbids"
        );
    }
    for narbor_crate in names.iter().filter(|n| n.starts_with("narbor-")) {
        assert_eq!(
            narbor_crate, "narbor-proto",
            "narbor-proto depends on another narbor crate"
        );
    }
}

#[test]
fn only_the_binary_uses_anyhow() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name == "narbor" || !dir.join("Cargo.toml").exists() {
            continue;
        }
        let names = crate_names(&dependency_tree(&name));
        assert!(
            !names.iter().any(|n| n == "anyhow"),
            "{name} depends on anyhow; libraries use thiserror"
        );
    }
}

#[test]
fn oci_and_publish_crates_keep_their_lanes() {
    let oci = crate_names(&dependency_tree("narbor-oci"));
    for forbidden in [
        "narbor-store",
        "narbor-server",
        "narbor-publish",
        "anyhow",
        "clap",
    ] {
        assert!(
            !oci.iter().any(|n| n == forbidden),
            "narbor-oci depends on {forbidden}, which docs/architecture.md forbids"
        );
    }
    let publish = crate_names(&dependency_tree("narbor-publish"));
    assert!(
        publish.iter().any(|n| n == "narbor-oci"),
        "tree looks wrong: {publish:?}"
    );
    for forbidden in ["narbor-server", "narbor-store", "anyhow", "clap"] {
        assert!(
            !publish.iter().any(|n| n == forbidden),
            "narbor-publish depends on {forbidden}, which docs/architecture.md forbids"
        );
    }
}

#[test]
fn server_crate_keeps_its_lane() {
    let server = crate_names(&dependency_tree("narbor-server"));
    assert!(
        server.iter().any(|n| n == "hyper"),
        "tree looks wrong: {server:?}"
    );
    for forbidden in ["narbor-publish", "anyhow", "clap", "toml"] {
        assert!(
            !server.iter().any(|n| n == forbidden),
            "narbor-server depends on {forbidden}, which docs/architecture.md forbids"
        );
    }
}
