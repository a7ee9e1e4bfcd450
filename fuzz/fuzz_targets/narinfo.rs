//! narinfo parsing must never panic; what parses must re-parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narbor_proto::NarInfo;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(info) = NarInfo::parse(text) {
        let printed = info.to_string();
        let again = NarInfo::parse(&printed).expect("canonical output re-parses");
        assert_eq!(again.to_string(), printed, "canonical form is a fixed point");
        let _ = info.fingerprint();
        // Rewriting a field no signature covers keeps the document and its
        // fingerprint; so does dropping one.
        let moved = NarInfo::with_field(text, "URL", "nar/x.nar");
        let again = NarInfo::parse(&moved).expect("a rewritten URL re-parses");
        assert_eq!(again.url, "nar/x.nar");
        assert_eq!(again.fingerprint(), info.fingerprint());
        let dropped = NarInfo::without_field(text, "FileHash");
        let again = NarInfo::parse(&dropped).expect("a dropped FileHash re-parses");
        assert_eq!(again.file_hash, None);
        assert_eq!(again.fingerprint(), info.fingerprint());
    }
    for (_, doc) in narbor_proto::narinfo::split_documents(text) {
        let _ = NarInfo::parse(doc);
    }
    let _ = narbor_proto::CacheInfo::parse(text);
});
