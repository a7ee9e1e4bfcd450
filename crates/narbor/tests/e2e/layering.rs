//! Keeps docs/architecture.md true: the protocol crate stays pure, the store
//! stays synchronous and below the server, and only the binary uses `anyhow`.

use std::process::Command;

fn dependency_tree(package: &str) -> String {
    dependency_tree_with(package, &[])
}

/// `cargo tree` of `package`'s normal dependencies, one crate a line.
fn dependency_tree_with(package: &str, extra: &[&str]) -> String {
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
        .args(extra)
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

/// No async runtime, socket or HTTP crate, and no `anyhow`: what
/// docs/architecture.md forbids the protocol and the store crates.
const NO_RUNTIME_SOCKETS_HTTP_OR_ANYHOW: [&str; 8] = [
    "tokio",
    "mio",
    "socket2",
    "hyper",
    "http",
    "reqwest",
    "anyhow",
    "async-trait",
];

/// Checks that `package`'s dependencies include `witness` (the tree is read
/// right), none of `forbidden`, and of the narbor crates only `package`
/// itself and `narbor_below`.
fn assert_lane(package: &str, witness: &str, forbidden: &[&str], narbor_below: &[&str]) {
    let names = crate_names(&dependency_tree(package));
    assert!(
        names.iter().any(|n| n == witness),
        "tree looks wrong: {names:?}"
    );
    for forbidden in forbidden {
        assert!(
            !names.iter().any(|n| n == forbidden),
            "{package} depends on {forbidden}, which docs/architecture.md forbids"
        );
    }
    for narbor_crate in names.iter().filter(|n| n.starts_with("narbor-")) {
        assert!(
            narbor_crate == package || narbor_below.contains(&narbor_crate.as_str()),
            "{package} depends on {narbor_crate}; only {narbor_below:?} may be below it"
        );
    }
}

#[test]
fn protocol_crate_has_no_runtime_sockets_or_anyhow() {
    assert_lane(
        "narbor-proto",
        "sha2",
        &NO_RUNTIME_SOCKETS_HTTP_OR_ANYHOW,
        &[],
    );
}

#[test]
fn store_crate_has_no_runtime_http_or_anyhow_and_only_proto_below_it() {
    assert_lane(
        "narbor-store",
        "redb",
        &NO_RUNTIME_SOCKETS_HTTP_OR_ANYHOW,
        &["narbor-proto"],
    );
}

/// The store owns its files: free space under it is its `admit`, the blob
/// being written is read through `BlobWriter::reader`. The server has no
/// business with statvfs or the store's paths, so it does not use `rustix`.
#[test]
fn the_server_leaves_the_store_files_to_the_store() {
    let direct = crate_names(&dependency_tree_with("narbor-server", &["--depth", "1"]));
    assert!(
        direct.iter().any(|n| n == "narbor-store"),
        "tree looks wrong: {direct:?}"
    );
    assert!(
        !direct.iter().any(|n| n == "rustix"),
        "narbor-server depends on rustix directly; ask narbor-store instead"
    );
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
