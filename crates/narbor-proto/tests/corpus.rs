//! Conformance against real cache.nixos.org narinfos.
//!
//! The corpus is reference data kept outside the repository; CI points
//! `NARBOR_NARINFO_CORPUS` at it (a text file of documents separated by blank
//! lines, or a `.zst` of one, decompressed with the `zstd` command so that
//! narbor-proto need not depend on zstd). Every document must parse, print back
//! byte for byte, and verify against cache.nixos.org's key.

use std::process::Command;

use narbor_proto::narinfo::{split_documents, NarInfo};
use narbor_proto::PublicKey;

const VAR: &str = "NARBOR_NARINFO_CORPUS";
const NIXOS_KEY: &str = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

fn read_corpus(path: &str) -> String {
    let bytes = if path.ends_with(".zst") {
        let out = Command::new("zstd")
            .args(["-dc", "--", path])
            .output()
            .unwrap_or_else(|e| panic!("{VAR}={path}: cannot run `zstd -dc`: {e}"));
        assert!(
            out.status.success(),
            "{VAR}={path}: `zstd -dc` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    } else {
        std::fs::read(path).unwrap_or_else(|e| panic!("{VAR}={path}: {e}"))
    };
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{VAR}={path}: not UTF-8: {e}"))
}

#[test]
fn corpus_round_trips_and_verifies() {
    let Some(path) = std::env::var_os(VAR) else {
        println!("{VAR} not set: corpus conformance test skipped");
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let text = read_corpus(&path);
    let keys = [PublicKey::parse(NIXOS_KEY).unwrap()];

    let docs = split_documents(&text);
    let mut failures = Vec::new();
    for &(line, doc) in &docs {
        let info = match NarInfo::parse(doc) {
            Ok(info) => info,
            Err(e) => {
                failures.push(format!("{path}:{line}: parse: {e}"));
                continue;
            }
        };
        let printed = info.to_string();
        if printed != doc {
            failures.push(format!(
                "{path}:{line}: does not print back byte for byte\n--- input\n{doc}--- printed\n{printed}"
            ));
        }
        if !info.verify(&keys) {
            failures.push(format!(
                "{path}:{line}: signature does not verify (fingerprint {})",
                info.fingerprint()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} documents failed:\n{}",
        failures.len(),
        docs.len(),
        failures.join("\n")
    );
    assert!(!docs.is_empty(), "{VAR}={path}: no documents found");
    println!(
        "corpus: {} documents round-tripped and verified",
        docs.len()
    );
}
