//! [`ServeOptions`]: `narbor serve`'s settings as given, by flags, the
//! environment or a config file, before any default applies; and how two
//! layers of them combine ([`ServeOptions::over`]).
//!
//! The fields are declared once, in `serve_options!`, each beside its entry
//! in `keys`: the macro makes the struct (clap takes the flag, environment
//! variable and help from the entry, serde the key from the field's name), the
//! list [`KEYS`] in the same order, and `over`, so no part can leave a field
//! out.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::keys::{self, Key};
use crate::units::{ByteSize, Span};

/// A setting from a higher layer (flags and environment) over the same
/// setting from a lower one (the file).
trait Over {
    fn over(self, lower: Self) -> Self;
}

/// A value given beats one not given.
impl<T> Over for Option<T> {
    fn over(self, lower: Self) -> Self {
        self.or(lower)
    }
}

/// A list given replaces the lower layer's; it is not appended to.
impl<T> Over for Vec<T> {
    fn over(self, lower: Self) -> Self {
        if self.is_empty() {
            lower
        } else {
            self
        }
    }
}

/// A switch is on when any layer turns it on.
impl Over for bool {
    fn over(self, lower: Self) -> Self {
        self || lower
    }
}

/// Declares [`ServeOptions`], [`KEYS`] and `over` from one list of
/// `field: Type = keys::ENTRY`, with any extra clap attributes before it.
macro_rules! serve_options {
    ($( $(#[$extra:meta])* $field:ident: $ty:ty = $key:ident, )*) => {
        /// Options of `narbor serve`, as flags and as config-file keys. Every
        /// field is optional here; [`ServeOptions::resolve`] applies the defaults.
        #[derive(Debug, Default, Clone, PartialEq, clap::Args, Deserialize)]
        #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
        pub struct ServeOptions {
            $(
                #[arg(
                    long = keys::$key.flag,
                    value_name = keys::$key.value_name,
                    env = keys::$key.env,
                    help = keys::$key.help
                )]
                $(#[$extra])*
                pub $field: $ty,
            )*
        }

        /// Every setting of `narbor serve`, in the order of `--help`.
        pub const KEYS: &[Key] = &[$(keys::$key),*];

        impl ServeOptions {
            /// These options (flags and environment) over `lower`'s (the file's).
            pub fn over(self, lower: ServeOptions) -> ServeOptions {
                ServeOptions {
                    $($field: self.$field.over(lower.$field),)*
                }
            }

            /// Each field's name and its entry, for the tests that serde's
            /// key for the field is the entry's.
            #[cfg(test)]
            pub(super) const FIELDS: &[(&str, Key)] = &[$((stringify!($field), keys::$key)),*];
        }
    };
}

serve_options! {
    #[arg(value_delimiter = ',')]
    listen: Vec<SocketAddr> = LISTEN,
    cache_dir: Option<PathBuf> = CACHE_DIR,
    max_size: Option<ByteSize> = MAX_SIZE,
    inactive: Option<Span> = INACTIVE,
    #[arg(value_delimiter = ' ')]
    upstreams: Vec<String> = UPSTREAMS,
    no_upstream: bool = NO_UPSTREAM,
    netrc_file: Option<PathBuf> = NETRC_FILE,
    upstream_token_files: Vec<String> = UPSTREAM_TOKEN_FILES,
    priority: Option<u32> = PRIORITY,
    narinfo_ttl: Option<Span> = NARINFO_TTL,
    negative_ttl: Option<Span> = NEGATIVE_TTL,
    upstream_timeout: Option<Span> = UPSTREAM_TIMEOUT,
    trusted_keys: Vec<String> = TRUSTED_KEYS,
    sign_key_file: Option<PathBuf> = SIGN_KEY_FILE,
    log: Option<String> = LOG,
    stats_public: bool = STATS_PUBLIC,
    lan: bool = LAN,
    tls_cert: Option<PathBuf> = TLS_CERT,
    tls_key: Option<PathBuf> = TLS_KEY,
    http_redirect_listen: Vec<SocketAddr> = HTTP_REDIRECT_LISTEN,
    oci: Option<String> = OCI,
    index_ttl: Option<Span> = INDEX_TTL,
    index_dir: Option<PathBuf> = INDEX_DIR,
    refresh_token_file: Option<PathBuf> = REFRESH_TOKEN_FILE,
}

impl ServeOptions {
    /// Reads a config file.
    pub fn from_file(path: &Path) -> anyhow::Result<ServeOptions> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        ServeOptions::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))
    }

    /// Parses a config file's text; a value that does not parse is an error
    /// that starts with its key (`max-size: "12X": unknown size unit`).
    pub fn from_toml(text: &str) -> Result<ServeOptions, toml::de::Error> {
        let document = toml::Deserializer::new(text);
        ServeOptions::deserialize(keyed::Keyed(document))
    }
}

/// A deserializer that puts the key before each error of its value. toml's
/// own errors show the line, which holds the key; a value's own error
/// (`"12X": unknown size unit`) then names it as an error of `resolve` does.
mod keyed {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};

    pub struct Keyed<D>(pub D);

    impl<'de, D: Deserializer<'de>> Deserializer<'de> for Keyed<D> {
        type Error = D::Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.deserialize_any(KeyedVisitor(visitor))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0
                .deserialize_struct(name, fields, KeyedVisitor(visitor))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    struct KeyedVisitor<V>(V);

    impl<'de, V: Visitor<'de>> Visitor<'de> for KeyedVisitor<V> {
        type Value = V::Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            self.0.expecting(f)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
            self.0.visit_map(KeyedMap {
                map,
                key: String::new(),
            })
        }
    }

    /// The table's entries, remembering the last key read.
    struct KeyedMap<A> {
        map: A,
        key: String,
    }

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for KeyedMap<A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, A::Error> {
            self.map.next_key_seed(ReadKey {
                seed,
                key: &mut self.key,
            })
        }

        fn next_value_seed<S: DeserializeSeed<'de>>(
            &mut self,
            seed: S,
        ) -> Result<S::Value, A::Error> {
            self.map.next_value_seed(NameKey {
                seed,
                key: &self.key,
            })
        }
    }

    /// Reads a key, keeps a copy, and hands it on.
    struct ReadKey<'a, K> {
        seed: K,
        key: &'a mut String,
    }

    impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for ReadKey<'_, K> {
        type Value = K::Value;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K::Value, D::Error> {
            let key: String = de::Deserialize::deserialize(d)?;
            self.key.clone_from(&key);
            self.seed.deserialize(key.into_deserializer())
        }
    }

    /// Reads a value; its error starts with the key.
    struct NameKey<'a, S> {
        seed: S,
        key: &'a str,
    }

    impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for NameKey<'_, S> {
        type Value = S::Value;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
            let key = self.key;
            self.seed
                .deserialize(d)
                .map_err(|e| de::Error::custom(format_args!("{key}: {e}")))
        }
    }
}
