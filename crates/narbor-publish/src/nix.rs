//! What Nix knows about store paths, asked through its command-line tools:
//! `nix-store --query --requisites` for the closure, `nix path-info --json`
//! for each path's NarHash, NarSize, references, deriver, ca and signatures.

use std::process::Command;

use narbor_proto::text::shorten;
use narbor_proto::{Sha256, StorePath};
use serde::Deserialize;

use crate::PublishError;

/// One valid store path as Nix recorded it.
#[derive(Debug, Clone)]
pub struct PathInfo {
    pub path: StorePath,
    pub nar_hash: Sha256,
    pub nar_size: u64,
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub ca: Option<String>,
    pub sigs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInfo {
    path: String,
    nar_hash: String,
    nar_size: u64,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    deriver: Option<String>,
    #[serde(default)]
    ca: Option<String>,
    #[serde(default)]
    signatures: Vec<String>,
    #[serde(default = "yes")]
    valid: bool,
}

fn yes() -> bool {
    true
}

/// The store paths `paths` name (store paths, paths inside them, or symlinks
/// to them such as `./result`), where they resolve to one.
pub fn root_paths(paths: &[String]) -> Vec<StorePath> {
    paths
        .iter()
        .filter_map(|p| {
            let resolved = std::fs::canonicalize(p).ok()?;
            let rest = resolved.strip_prefix(narbor_proto::STORE_DIR).ok()?;
            let base = rest.components().next()?.as_os_str().to_str()?;
            StorePath::from_base_name(base).ok()
        })
        .collect()
}

/// Paths per command line, far below any `ARG_MAX`.
const BATCH: usize = 500;

fn run(cmd: &mut Command) -> Result<Vec<u8>, PublishError> {
    let name = shorten(&format!("{cmd:?}"), 200);
    let out = cmd.output().map_err(|e| PublishError::Nix {
        command: name.clone(),
        detail: format!("cannot run it: {e} (is Nix installed?)"),
    })?;
    if !out.status.success() {
        return Err(PublishError::Nix {
            command: name,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// The closure of `paths` (store paths or symlinks to them, e.g. `./result`),
/// each path with what Nix recorded about it, in Nix's order.
pub fn closure_infos(paths: &[String]) -> Result<Vec<PathInfo>, PublishError> {
    let mut closure = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for batch in paths.chunks(BATCH) {
        let out = run(Command::new("nix-store")
            .args(["--query", "--requisites", "--"])
            .args(batch))?;
        for line in String::from_utf8_lossy(&out).lines() {
            let line = line.trim();
            if !line.is_empty() && seen.insert(line.to_owned()) {
                closure.push(line.to_owned());
            }
        }
    }
    let mut infos = Vec::with_capacity(closure.len());
    for batch in closure.chunks(BATCH) {
        let out = run(Command::new("nix")
            .args([
                "--extra-experimental-features",
                "nix-command",
                "path-info",
                "--json",
                "--",
            ])
            .args(batch))?;
        let raw: Vec<RawInfo> = serde_json::from_slice(&out).map_err(|e| PublishError::Nix {
            command: "nix path-info --json".into(),
            detail: format!("unexpected output: {e}"),
        })?;
        for r in raw {
            infos.push(convert(r)?);
        }
    }
    Ok(infos)
}

fn convert(r: RawInfo) -> Result<PathInfo, PublishError> {
    let bad = |what: &str, e: String| PublishError::Nix {
        command: "nix path-info --json".into(),
        detail: format!("{}: {what}: {e}", r.path),
    };
    if !r.valid {
        return Err(bad("path", "not valid in the store".into()));
    }
    let path = StorePath::from_absolute_path(&r.path).map_err(|e| bad("path", e.to_string()))?;
    let nar_hash = Sha256::parse(&r.nar_hash).map_err(|e| bad("narHash", e.to_string()))?;
    let references = r
        .references
        .iter()
        .map(|p| StorePath::from_absolute_path(p).map_err(|e| bad("reference", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let deriver = match r.deriver.as_deref() {
        None | Some("") | Some("unknown-deriver") => None,
        Some(d) => {
            Some(StorePath::from_absolute_path(d).map_err(|e| bad("deriver", e.to_string()))?)
        }
    };
    Ok(PathInfo {
        path,
        nar_hash,
        nar_size: r.nar_size,
        references,
        deriver,
        ca: r.ca.filter(|c| !c.is_empty()),
        sigs: r.signatures,
    })
}
