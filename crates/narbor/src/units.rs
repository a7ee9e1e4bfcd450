//! Sizes (`200G`, `500M`) and durations (`30d`, `1m`, `90s`) as operators
//! write them: [`ByteSize`] and [`Span`], parsed the same way from a flag, an
//! environment variable or a config file. What each value means is the
//! caller's business (`config` for `serve`, `cli::gc` for `--retention`).

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A byte size: a number with an optional binary suffix K, M, G or T (powers
/// of 1024; a trailing `B` or `iB` is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let t = t
            .strip_suffix("iB")
            .or_else(|| t.strip_suffix('B'))
            .unwrap_or(t);
        let (digits, shift) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let shift = match c.to_ascii_uppercase() {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => return Err(format!("{s:?}: unknown size unit {c:?} (use K, M, G or T)")),
                };
                (&t[..i], shift)
            }
            _ => (t, 0),
        };
        let n: u64 = digits
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a size (examples: 200G, 500M, 1048576)"))?;
        n.checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

/// A duration: a number with a unit s, m, h or d (a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(Duration);

impl Span {
    pub fn duration(self) -> Duration {
        self.0
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Span, String> {
        let t = s.trim();
        let (digits, unit) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
            _ => (t, 's'),
        };
        let n: u64 = digits
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (examples: 30d, 12h, 1m, 90s)"))?;
        let secs = match unit {
            's' => Some(n),
            'm' => n.checked_mul(60),
            'h' => n.checked_mul(3600),
            'd' => n.checked_mul(86400),
            _ => {
                return Err(format!(
                    "{s:?}: unknown duration unit {unit:?} (use s, m, h or d)"
                ))
            }
        };
        secs.map(|secs| Span(Duration::from_secs(secs)))
            .ok_or_else(|| format!("{s:?} is too long"))
    }
}

/// A config file gives both as strings, as a flag would (`max-size = "200G"`).
fn from_string<'de, D: Deserializer<'de>, T: FromStr<Err = String>>(d: D) -> Result<T, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        from_string(d)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        from_string(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Result<u64, String> {
        s.parse::<ByteSize>().map(ByteSize::bytes)
    }

    fn duration(s: &str) -> Result<Duration, String> {
        s.parse::<Span>().map(Span::duration)
    }

    #[test]
    fn sizes() {
        assert_eq!(size("200G"), Ok(200 << 30));
        assert_eq!(size("500M"), Ok(500 << 20));
        assert_eq!(size("500MiB"), Ok(500 << 20));
        assert_eq!(size("1k"), Ok(1024));
        assert_eq!(size("12345"), Ok(12345));
        assert!(size("12X").is_err());
        assert!(size("G").is_err());
        assert!(size("-1G").is_err());
        assert!(size("99999999999T").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert!(duration("1w").is_err());
        assert!(duration("abc").is_err());
    }

    /// A config file's strings parse as flags do; other TOML types are errors.
    #[test]
    fn config_values_are_strings() {
        #[derive(Debug, Deserialize)]
        struct T {
            size: ByteSize,
            ttl: Span,
        }
        let t: T = toml::from_str("size = \"1K\"\nttl = \"2m\"").unwrap();
        assert_eq!((t.size.bytes(), t.ttl.duration().as_secs()), (1024, 120));
        let err = toml::from_str::<T>("size = \"1X\"\nttl = \"2m\"").unwrap_err();
        assert!(err.message().contains("unknown size unit 'X'"), "{err}");
        assert!(toml::from_str::<T>("size = 1024\nttl = \"2m\"").is_err());
    }
}
