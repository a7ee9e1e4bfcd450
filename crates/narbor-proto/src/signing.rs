//! ed25519 keys and signatures in Nix's text format.
//!
//! Nix writes all three as `<name>:<base64>`: a secret key is libsodium's 64
//! bytes (32-byte seed, then the 32-byte public key), a public key 32 bytes, a
//! signature 64 bytes. This module owns those formats and the sign/verify
//! operations on raw messages. What is signed (the narinfo fingerprint) belongs
//! to [`crate::narinfo`]. Secret material never appears in `Debug` output or in
//! error messages.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use thiserror::Error;

/// Bytes in a libsodium secret key (seed followed by public key).
pub const SECRET_KEY_LEN: usize = 64;
/// Bytes in a public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes in a signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why a string is not a key or a signature.
///
/// Errors about secret keys name the key but never echo its text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("{what} is not of the form <name>:<base64>")]
    MissingColon { what: &'static str },
    #[error("{what} has an empty name")]
    EmptyName { what: &'static str },
    #[error(
        "{what} name {name:?} contains {char:?} (no ':', whitespace or control characters allowed)"
    )]
    InvalidName {
        what: &'static str,
        name: String,
        char: char,
    },
    #[error("{what} {name:?}: invalid base64: {reason}")]
    Base64 {
        what: &'static str,
        name: String,
        reason: String,
    },
    #[error("{what} {name:?}: decodes to {actual} bytes, expected {expected}")]
    WrongLength {
        what: &'static str,
        name: String,
        expected: usize,
        actual: usize,
    },
    #[error("secret key {name:?}: its last 32 bytes are not the public key of its seed")]
    InconsistentSecretKey { name: String },
    #[error("public key {name:?} is not a valid ed25519 point")]
    InvalidPublicKey { name: String },
}

const SECRET: &str = "secret key";
const PUBLIC: &str = "public key";
const SIGNATURE: &str = "signature";

/// Checks a key name: non-empty, no `:`, no whitespace or control characters
/// (a name is written into `Sig:` lines, so it must stay on one line).
fn check_name(what: &'static str, name: &str) -> Result<(), KeyError> {
    if name.is_empty() {
        return Err(KeyError::EmptyName { what });
    }
    match name
        .chars()
        .find(|&c| c == ':' || c.is_whitespace() || c.is_control())
    {
        Some(char) => Err(KeyError::InvalidName {
            what,
            name: crate::store_path::truncate(name),
            char,
        }),
        None => Ok(()),
    }
}

/// Splits `name:base64` and decodes into exactly `N` bytes.
///
/// For secret keys the base64 error text is dropped: it can quote input bytes.
fn split_decode<'a, const N: usize>(
    what: &'static str,
    s: &'a str,
) -> Result<(&'a str, [u8; N]), KeyError> {
    let (name, b64) = s.split_once(':').ok_or(KeyError::MissingColon { what })?;
    check_name(what, name)?;
    let owned = || crate::store_path::truncate(name);
    let bytes = BASE64.decode(b64).map_err(|e| KeyError::Base64 {
        what,
        name: owned(),
        reason: if what == SECRET {
            "not valid padded standard base64".to_owned()
        } else {
            e.to_string()
        },
    })?;
    let actual = bytes.len();
    let arr: [u8; N] = bytes.try_into().map_err(|_| KeyError::WrongLength {
        what,
        name: owned(),
        expected: N,
        actual,
    })?;
    Ok((name, arr))
}

/// An ed25519 secret key with its Nix name.
///
/// `Display` writes Nix's secret key file format (`name:base64(64 bytes)`);
/// `Debug` shows the name only.
#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl SecretKey {
    /// Parses `name:base64(seed ‖ public key)`, ignoring surrounding whitespace
    /// (key files end with a newline).
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, mut bytes) = split_decode::<SECRET_KEY_LEN>(SECRET, s.trim())?;
        let key = SigningKey::from_keypair_bytes(&bytes);
        bytes.fill(0);
        let key = key.map_err(|_| KeyError::InconsistentSecretKey {
            name: crate::store_path::truncate(name),
        })?;
        Ok(SecretKey {
            name: name.to_owned(),
            key,
        })
    }

    /// A key from a 32-byte seed (the caller supplies the randomness).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        check_name(SECRET, name)?;
        Ok(SecretKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching public key, under the same name.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `msg` (the whole message; ed25519 hashes it itself).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature {
            key_name: self.name.clone(),
            bytes: self.key.sign(msg).to_bytes(),
        }
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.name,
            BASE64.encode(self.key.to_keypair_bytes())
        )
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FromStr for SecretKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An ed25519 public key with its Nix name, e.g.
/// `cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    name: String,
    key: VerifyingKey,
}

impl PublicKey {
    /// Parses `name:base64(32 bytes)`, ignoring surrounding whitespace.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split_decode::<PUBLIC_KEY_LEN>(PUBLIC, s.trim())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPublicKey {
            name: crate::store_path::truncate(name),
        })?;
        Ok(PublicKey {
            name: name.to_owned(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.key.to_bytes()
    }

    /// True when `sig` was made by this key's name over `msg`.
    ///
    /// Uses strict verification (rejects small-order keys and non-canonical
    /// signatures), as libsodium does for Nix.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        sig.key_name == self.name
            && self
                .key
                .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.bytes))
                .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, BASE64.encode(self.key.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A detached ed25519 signature with the name of the key that made it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    key_name: String,
    bytes: [u8; SIGNATURE_LEN],
}

impl Signature {
    /// Parses `name:base64(64 bytes)`, exactly (no trimming).
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split_decode::<SIGNATURE_LEN>(SIGNATURE, s)?;
        Ok(Signature {
            key_name: name.to_owned(),
            bytes,
        })
    }

    /// A signature from its parts.
    pub fn new(key_name: &str, bytes: [u8; SIGNATURE_LEN]) -> Result<Self, KeyError> {
        check_name(SIGNATURE, key_name)?;
        Ok(Signature {
            key_name: key_name.to_owned(),
            bytes,
        })
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    pub fn bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.bytes
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.key_name, BASE64.encode(self.bytes))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    // RFC 8032, section 7.1, TEST 1 (empty message).
    const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn rfc_key() -> SecretKey {
        SecretKey::from_seed("test-1", hex(RFC_SEED)).unwrap()
    }

    #[test]
    fn rfc8032_vector() {
        let sk = rfc_key();
        assert_eq!(sk.public_key().to_bytes(), hex::<32>(RFC_PUBLIC));
        let sig = sk.sign(b"");
        assert_eq!(sig.bytes(), &hex::<64>(RFC_SIG));
        assert_eq!(sig.key_name(), "test-1");
        assert!(sk.public_key().verify(b"", &sig));
    }

    #[test]
    fn secret_key_text_round_trips() {
        let sk = rfc_key();
        let text = sk.to_string();
        let (name, b64) = text.split_once(':').unwrap();
        assert_eq!(name, "test-1");
        let raw = BASE64.decode(b64).unwrap();
        assert_eq!(raw[..32], hex::<32>(RFC_SEED));
        assert_eq!(raw[32..], hex::<32>(RFC_PUBLIC));
        // Key files end with a newline; surrounding whitespace is ignored.
        let back = SecretKey::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(back.to_string(), text);
        assert_eq!(back.name(), "test-1");
    }

    #[test]
    fn public_key_and_signature_text_round_trip() {
        let pk = rfc_key().public_key();
        let text = pk.to_string();
        assert_eq!(PublicKey::parse(&format!("{text}\n")).unwrap(), pk);
        let sig = rfc_key().sign(b"hello");
        assert_eq!(Signature::parse(&sig.to_string()).unwrap(), sig);
        assert_eq!(Signature::new("test-1", *sig.bytes()).unwrap(), sig);
    }

    #[test]
    fn real_cache_nixos_org_key_parses() {
        let pk = PublicKey::parse("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")
            .unwrap();
        assert_eq!(pk.name(), "cache.nixos.org-1");
        assert_eq!(
            pk.to_string(),
            "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
        );
    }

    #[test]
    fn verify_rejects_wrong_message_wrong_key_and_wrong_name() {
        let sk = rfc_key();
        let sig = sk.sign(b"message");
        let pk = sk.public_key();
        assert!(pk.verify(b"message", &sig));
        assert!(!pk.verify(b"messagf", &sig));
        let other = SecretKey::from_seed("test-1", [7; 32])
            .unwrap()
            .public_key();
        assert!(!other.verify(b"message", &sig));
        // Same key bytes, different name: not the key that signed.
        let renamed = PublicKey::parse(&pk.to_string().replace("test-1", "test-2")).unwrap();
        assert!(!renamed.verify(b"message", &sig));
        let mut bytes = *sig.bytes();
        bytes[10] ^= 1;
        assert!(!pk.verify(b"message", &Signature::new("test-1", bytes).unwrap()));
    }

    #[test]
    fn debug_of_secret_key_does_not_leak() {
        let sk = rfc_key();
        let text = sk.to_string();
        let b64 = text.split_once(':').unwrap().1;
        let seed_b64 = BASE64.encode(hex::<32>(RFC_SEED));
        for dbg in [format!("{sk:?}"), format!("{sk:#?}")] {
            assert!(dbg.contains("test-1"), "{dbg}");
            assert!(dbg.contains("redacted"), "{dbg}");
            assert!(!dbg.contains(b64), "{dbg}");
            assert!(!dbg.contains(&seed_b64[..20]), "{dbg}");
            assert!(!dbg.to_lowercase().contains(&RFC_SEED[..16]), "{dbg}");
        }
    }

    #[test]
    fn secret_key_errors_do_not_echo_the_key() {
        let text = rfc_key().to_string();
        let b64 = text.split_once(':').unwrap().1;
        let mut corrupted = text.clone();
        corrupted.push('!');
        for bad in [b64.to_owned(), corrupted] {
            let msg = SecretKey::parse(&bad).unwrap_err().to_string();
            assert!(!msg.contains(&b64[..20]), "{msg}");
        }
    }

    #[test]
    fn inconsistent_secret_key_is_rejected() {
        let mut raw = rfc_key().key.to_keypair_bytes();
        raw[40] ^= 1;
        let text = format!("test-1:{}", BASE64.encode(raw));
        assert_eq!(
            SecretKey::parse(&text).unwrap_err(),
            KeyError::InconsistentSecretKey {
                name: "test-1".into()
            }
        );
    }

    #[test]
    fn parse_errors() {
        let b64_32 = BASE64.encode([1u8; 32]);
        let b64_64 = BASE64.encode([1u8; 64]);
        assert_eq!(
            PublicKey::parse("no-colon").unwrap_err(),
            KeyError::MissingColon { what: PUBLIC }
        );
        assert_eq!(
            PublicKey::parse(&format!(":{b64_32}")).unwrap_err(),
            KeyError::EmptyName { what: PUBLIC }
        );
        assert!(matches!(
            Signature::parse(&format!("a b:{b64_64}")),
            Err(KeyError::InvalidName { char: ' ', .. })
        ));
        assert!(matches!(
            Signature::parse("k:not base64!"),
            Err(KeyError::Base64 { .. })
        ));
        assert_eq!(
            Signature::parse(&format!("k:{b64_32}")).unwrap_err(),
            KeyError::WrongLength {
                what: SIGNATURE,
                name: "k".into(),
                expected: 64,
                actual: 32
            }
        );
        assert!(matches!(
            PublicKey::parse(&format!("k:{b64_64}")),
            Err(KeyError::WrongLength {
                expected: 32,
                actual: 64,
                ..
            })
        ));
        assert!(matches!(
            SecretKey::parse(&format!("k:{b64_32}")),
            Err(KeyError::WrongLength {
                expected: 64,
                actual: 32,
                ..
            })
        ));
        assert!(matches!(
            SecretKey::from_seed("", [0; 32]),
            Err(KeyError::EmptyName { .. })
        ));
        assert!(matches!(
            SecretKey::from_seed("a:b", [0; 32]),
            Err(KeyError::InvalidName { char: ':', .. })
        ));
        assert!(matches!(
            SecretKey::from_seed("a\nb", [0; 32]),
            Err(KeyError::InvalidName { char: '\n', .. })
        ));
        // Signatures are taken exactly as written: no trimming.
        assert!(Signature::parse(&format!("k:{b64_64} ")).is_err());
    }

    #[test]
    fn invalid_point_is_rejected() {
        // y = 2 is not the y-coordinate of a curve point.
        let mut raw = [0u8; 32];
        raw[0] = 2;
        assert_eq!(
            PublicKey::parse(&format!("k:{}", BASE64.encode(raw))).unwrap_err(),
            KeyError::InvalidPublicKey { name: "k".into() }
        );
    }
}
