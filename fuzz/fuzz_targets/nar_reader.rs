//! The streaming NAR validator must never panic, whatever the bytes and however
//! they are split; one-shot and chunked feeding must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narbor_proto::nar::{self, NarValidator};

fuzz_target!(|data: &[u8]| {
    let whole = nar::validate(data, true);
    let mut v = NarValidator::new().with_listing();
    let mut chunked = Ok(());
    for chunk in data.chunks(7) {
        chunked = v.update(chunk);
        if chunked.is_err() {
            break;
        }
    }
    let chunked = chunked.and_then(|()| v.finish());
    assert_eq!(whole.is_ok(), chunked.is_ok());
    if let (Ok(a), Ok(b)) = (whole, chunked) {
        assert_eq!(a.nar_hash, b.nar_hash);
        // The listing of any archive prints as a `.ls` that reads back.
        let listing = a.listing.expect("listing requested");
        let json = nar::listing::to_json(&listing);
        assert_eq!(nar::listing::parse_json(&json).as_ref(), Ok(&listing));
    }
});
