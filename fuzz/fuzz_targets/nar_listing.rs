//! `.ls` parsing must never panic; what parses prints back (as Nix writes
//! it) to a document that parses to the same tree, and printing that tree
//! again gives the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narbor_proto::nar::listing::{parse_json, to_json};

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = parse_json(data) {
        let printed = to_json(&root);
        let again = parse_json(&printed).expect("a printed listing re-parses");
        assert_eq!(again, root, "printing keeps the tree");
        assert_eq!(to_json(&again), printed, "the printed form is a fixed point");
    }
});
