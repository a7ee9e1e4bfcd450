//! Seeds a store with N narinfo-sized documents, for measuring restarts:
//! `cargo run --release -p narbor-store --example seed -- DIR N`.
//! Prints the key of one seeded document.

use narbor_store::{DiskStore, StoreConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: seed DIR COUNT");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("COUNT is a number");
    let store = DiskStore::open(StoreConfig {
        dir: dir.into(),
        max_size: u64::MAX,
    })
    .expect("open store");
    const ALPHABET: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let hash = |i: usize| -> String {
        let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF;
        (0..32)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ALPHABET[(x % 32) as usize] as char
            })
            .collect()
    };
    let started = std::time::Instant::now();
    for batch in (0..n).collect::<Vec<_>>().chunks(100_000) {
        let docs: Vec<(String, Vec<u8>)> = batch
            .iter()
            .map(|&i| {
                let h = hash(i);
                // A realistic narinfo: about 600 bytes.
                let body = format!(
                    "StorePath: /nix/store/{h}-package-{i}\nURL: nar/{h}{h}0000000000000000000.nar.xz\n\
                     Compression: xz\nFileHash: sha256:{h}{h}0000000000000000000\nFileSize: {i}\n\
                     NarHash: sha256:{h}{h}1111111111111111111\nNarSize: {i}\n\
                     References: {h}-package-{i} {h}-glibc-2.40 {h}-gcc-lib\n\
                     Deriver: {h}-package-{i}.drv\n\
                     Sig: cache.nixos.org-1:{h}{h}{h}AAAAAAAAAAAAAAAAAAAAAAAA==\n"
                );
                (format!("{h}.narinfo"), body.into_bytes())
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = docs
            .iter()
            .map(|(k, b)| (k.as_str(), b.as_slice()))
            .collect();
        store.put_documents(&refs).expect("put documents");
    }
    eprintln!("seeded {n} documents in {:?}", started.elapsed());
    println!("{}.narinfo", hash(n / 2));
}
