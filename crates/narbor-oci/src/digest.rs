//! OCI content digests. narbor writes and accepts only `sha256:<64 hex>`.

use std::fmt;
use std::str::FromStr;

use narbor_proto::text::shorten;
use narbor_proto::Sha256;

use crate::OciError;

/// A `sha256:<hex>` content digest: the address of a blob or manifest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub Sha256);

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data))
    }

    /// Parses `sha256:<64 lower-case hex>`; any other algorithm or spelling is
    /// an error (a registry never names content otherwise).
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let bad = |reason: &str| OciError::invalid(format!("digest {:?}", shorten(s, 80)), reason);
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| bad("only sha256 digests are supported"))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("expected 64 lower-case hex digits"));
        }
        Sha256::parse(s)
            .map(Digest)
            .map_err(|e| bad(&e.to_string()))
    }

    /// The sha256 this digest names.
    pub fn sha256(&self) -> &Sha256 {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let d = Digest::of(b"{}");
        assert_eq!(
            d.to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert!(Digest::parse("sha512:00").is_err());
        assert!(Digest::parse(
            "sha256:44136FA355B3678A1146AD16F7E8649E94FB4FC21FE77E8310C060F61CAAFF8A"
        )
        .is_err());
        assert!(
            Digest::parse("sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s").is_err()
        );
        assert!(Digest::parse("").is_err());
    }
}
