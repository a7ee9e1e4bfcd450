//! Seeds an OCI cache index with N synthetic signed narinfos, for measuring
//! `serve --oci` with a large index (bench/rows/8-oci-index.sh) without
//! pushing N real store paths:
//!
//! `cargo run --release -p narbor-oci --example seed_index -- STORE N [JOBS]`
//!
//! STORE is e.g. `oci+http://127.0.0.1:5000/cache` (no auth). Every entry
//! shares one small NAR blob (uploaded first; a fragment's manifest must name
//! blobs the registry has), so the narinfos carry that blob's FileHash and
//! FileSize and are consistent as the index reader checks. Each narinfo is
//! about 550 bytes with three references and an ed25519 signature by the
//! fixed key `bench-1` (its public key is printed on stderr). Prints the
//! `/<hash>.narinfo` path of one seeded entry on stdout.

use std::sync::Arc;

use bytes::Bytes;
use narbor_oci::{
    now_unix, write_fragments, Digest, NewEntry, RegistryClient, StoreRef, EMPTY_CONFIG_JSON,
};
use narbor_proto::{NarInfo, SecretKey, Sha256, StorePath, StorePathHash};

/// A deterministic, well-spread store path hash for entry `i`.
fn path_hash(i: usize) -> StorePathHash {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF;
    let mut h = [0u8; 20];
    for b in &mut h {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    StorePathHash(h)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(store), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: seed_index STORE COUNT [JOBS]");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("COUNT is a number");
    let jobs: usize = args
        .next()
        .map_or(8, |j| j.parse().expect("JOBS is a number"));
    let store = StoreRef::parse(&store).expect("STORE is oci://HOST/NAME or oci+http://...");
    let client = Arc::new(RegistryClient::new(store, None).expect("registry client"));
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");

    let started = std::time::Instant::now();
    let blob = Bytes::from_static(b"narbor bench placeholder NAR blob\n");
    let blob_digest = Digest::of(&blob);
    rt.block_on(client.upload_blob_bytes(&blob_digest, blob.clone()))
        .expect("upload the shared blob");
    // The fragments' empty config blob, once before the parallel writers:
    // docker-registry answers MANIFEST_BLOB_UNKNOWN for a manifest put while
    // another session is committing the same blob.
    let empty = Bytes::from_static(EMPTY_CONFIG_JSON);
    rt.block_on(client.upload_blob_bytes(&Digest::of(&empty), empty))
        .expect("upload the empty config blob");

    let key = SecretKey::from_seed("bench-1", [7; 32]).expect("key");
    eprintln!("trusted key: {}", key.public_key());
    let pushed_at = now_unix();
    let entries: Vec<NewEntry> = (0..n)
        .map(|i| {
            let path = |j: usize, name: &str| {
                StorePath::new(path_hash(j), name).expect("valid store path")
            };
            let mut info = NarInfo::new(
                path(i, &format!("bench-package-{i}")),
                format!("nar/{}.nar.zst", blob_digest.0.to_nix32()),
                Sha256::digest(&i.to_le_bytes()),
                1000 + i as u64,
            );
            info.compression = "zstd".into();
            info.file_hash = Some(blob_digest.0);
            info.file_size = Some(blob.len() as u64);
            info.references = vec![
                path(i, &format!("bench-package-{i}")),
                path(n + 1, "glibc-2.40"),
                path(n + 2, "gcc-13.3.0-lib"),
            ];
            info.deriver = Some(path(n + 3 + i, &format!("bench-package-{i}.drv")));
            info.sign(&key);
            NewEntry {
                narinfo: info.to_string(),
                nar_digest: blob_digest,
                blob_size: blob.len() as u64,
                pushed_at,
            }
        })
        .collect();
    eprintln!("made {n} signed narinfos in {:?}", started.elapsed());

    // JOBS writers in parallel, each over its own contiguous share.
    let share = n.div_ceil(jobs.max(1)).max(1);
    let entries = Arc::new(entries);
    let fragments: usize = rt.block_on(async {
        let mut tasks = Vec::new();
        for start in (0..n).step_by(share) {
            let (client, entries) = (client.clone(), entries.clone());
            tasks.push(tokio::spawn(async move {
                let end = (start + share).min(entries.len());
                write_fragments(&client, &entries[start..end])
                    .await
                    .expect("write fragments")
                    .len()
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("writer task");
        }
        total
    });
    eprintln!(
        "wrote {n} entries in {fragments} fragments in {:?}",
        started.elapsed()
    );
    println!("/{}.narinfo", path_hash(n / 2).to_nix32());
}
