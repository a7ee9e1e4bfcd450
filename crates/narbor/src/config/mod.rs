//! `narbor serve`'s settings: one definition that is both the command line and
//! the TOML config file, and how they combine.
//!
//! Every option has a flag (`--max-size`), a config key (`max-size`) and, for
//! the usual ones, an environment variable (`NARBOR_MAX_SIZE`). Precedence: a
//! flag beats the environment, which beats the file, which beats the built-in
//! default. Unknown keys in the file are errors that name the key.
//!
//! - `keys`: the one list of settings (key, flag, variable, kind, default,
//!   help), from which the command line is made and the packaging and docs
//!   are checked.
//! - `options`: [`ServeOptions`], the settings as given, already typed
//!   (sizes, durations, addresses), and their layering.
//! - `resolve`: [`ServeSettings`], defaults applied and everything checked.
//! - `nixcache`: nixcache-oci's environment variables as aliases.

mod keys;
mod nixcache;
mod options;
mod resolve;

pub use keys::Fallback;
pub use nixcache::apply_nixcache_env;
pub use options::{ServeOptions, KEYS};
pub use resolve::ServeSettings;

#[cfg(test)]
mod tests;
