//! `narbor gc`: drop unreachable, old entries and reclaim their blobs.

use std::process::ExitCode;

use narbor_publish::GcOptions;

use super::oci::{client, runtime};
use crate::units::Span;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store: `oci://HOST/NAME` or `oci+http://HOST:PORT/NAME`.
    #[arg(long, value_name = "STORE")]
    store: String,
    /// Keep the closure of this store path (repeatable; it need not exist locally).
    #[arg(long, value_name = "PATH")]
    root: Vec<String>,
    /// Keep entries pushed more recently than this (e.g. 30d, 12h, 0s).
    #[arg(long, default_value = "30d")]
    retention: Span,
    /// Print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Finish a migration from nixcache-oci: move its `cache-index` entries into
    /// narbor's index and delete that tag (nixcache-oci's proxy and publisher then
    /// see an empty cache). Without it, gc keeps `cache-index` readable for them.
    #[arg(long)]
    migrate: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = client(&args.store)?;
    let opts = GcOptions {
        roots: args.root,
        retention: args.retention.duration(),
        dry_run: args.dry_run,
        migrate: args.migrate,
    };
    let report = runtime()?.block_on(narbor_publish::gc(client.clone(), &opts))?;
    let plan = &report.plan;
    let verb = if args.dry_run { "would" } else { "will" };
    println!(
        "{}: {} entries; keep {}, remove {}; {} merge {} fragment(s); {} delete up to {} blob(s)",
        client.store(),
        plan.entries,
        plan.keep,
        plan.remove.len(),
        verb,
        plan.merge.len(),
        verb,
        plan.delete_blobs.len()
    );
    match (plan.legacy_kept, plan.legacy_rewritten) {
        (Some(n), true) => println!(
            "nixcache-oci's cache-index: {verb} keep {n} entries, rewritten in its own format (--migrate moves them into narbor's index)"
        ),
        (Some(n), false) => println!(
            "nixcache-oci's cache-index: {n} entries, left as they are (--migrate moves them into narbor's index)"
        ),
        (None, _) => {}
    }
    for p in &plan.remove {
        println!("remove {}", p.to_absolute_path());
    }
    for t in &plan.merge {
        println!("merge {t}");
    }
    for d in &plan.delete_blobs {
        println!("delete-blob {d}");
    }
    if args.dry_run {
        println!("dry run: nothing changed");
    } else {
        println!(
            "done: wrote {} fragment(s), deleted {} manifest(s) and {} blob(s); {} blob(s) kept for a concurrent push",
            report.fragments_written.len(),
            report.manifests_deleted,
            report.blobs_deleted,
            report.blobs_still_referenced
        );
    }
    Ok(ExitCode::SUCCESS)
}
