//! netrc parsing must never panic, and a lookup must find only what parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use narbor_proto::netrc::Netrc;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(n) = Netrc::parse(&text) {
        for host in ["", "a", "localhost", "cache.nixos.org"] {
            if let Some((user, password)) = n.lookup(host) {
                assert!(text.contains(user) || user.contains(['\n', '\r', '\t', '"', '\\']));
                assert!(
                    text.contains(password) || password.contains(['\n', '\r', '\t', '"', '\\'])
                );
            }
        }
    }
});
