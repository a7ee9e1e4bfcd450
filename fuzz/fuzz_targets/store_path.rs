//! Store path parsing must never panic; what parses must print back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narbor_proto::StorePath;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = StorePath::from_absolute_path(text) {
        assert_eq!(p.to_absolute_path(), text);
    }
    if let Ok(p) = StorePath::from_base_name(text) {
        assert_eq!(p.base_name(), text);
    }
    let _ = narbor_proto::StorePathHash::parse(text);
});
