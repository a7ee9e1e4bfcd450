//! Key, signature and hash parsing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = narbor_proto::SecretKey::parse(text);
    let _ = narbor_proto::PublicKey::parse(text);
    let _ = narbor_proto::Signature::parse(text);
    let _ = narbor_proto::Sha256::parse(text);
    let _ = narbor_proto::nixbase32::decode(text.as_bytes());
});
