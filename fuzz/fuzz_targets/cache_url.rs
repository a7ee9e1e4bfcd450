//! The URL grammar must never panic; what parses must print back the same path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narbor_proto::CacheUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = CacheUrl::parse(text) {
        assert_eq!(url.to_path(), text.trim_start_matches('/'));
    }
});
