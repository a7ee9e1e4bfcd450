//! End-to-end tests: the `narbor` binary against the real Nix client.
//!
//! One test binary (so CI links once). Every test that needs Nix uses the real
//! `nix` from Debian's `nix-bin`, offline, single-user, with its own
//! `XDG_CACHE_HOME`; `scripts/test.sh` installs it. A missing tool fails the
//! test with a message naming it: nothing is skipped silently.

mod config;
mod double;
mod hostile;
mod interop;
mod lan;
mod layering;
mod oci;
mod packaging;
mod packaging_keys;
mod packaging_module;
mod protocol;
mod registry;
mod secrets;
mod seed;
mod serve;
mod stats;
mod support;
mod tls;
mod upstream;
