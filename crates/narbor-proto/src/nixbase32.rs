//! Nix's base-32 encoding ("nix32").
//!
//! Nix writes hashes in a base-32 alphabet without `e o u t` and reads the bytes
//! from the end: the last character encodes the lowest bits of the first byte.
//! This module owns that encoding and nothing else.

use thiserror::Error;

/// The 32 characters Nix uses, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Why a string is not valid nixbase32 for the length asked for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("invalid nixbase32 character {char:?} at position {position}")]
    InvalidChar { char: char, position: usize },
    #[error("nixbase32 string has length {actual}, expected {expected}")]
    InvalidLength { actual: usize, expected: usize },
    #[error("nixbase32 string encodes bits beyond {bytes} bytes")]
    TrailingBits { bytes: usize },
}

/// Length of the nixbase32 encoding of `bytes` bytes.
pub const fn encoded_len(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes * 8 - 1) / 5 + 1
    }
}

/// The number of bytes a nixbase32 string of `chars` characters decodes to,
/// if that length is one an encoding can have.
pub fn decoded_len(chars: usize) -> Option<usize> {
    let bytes = chars * 5 / 8;
    (encoded_len(bytes) == chars).then_some(bytes)
}

const INVALID: u8 = 0xff;

const fn reverse_alphabet() -> [u8; 256] {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 32 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
}

static REVERSE: [u8; 256] = reverse_alphabet();

/// True when `c` is one of the 32 nixbase32 characters.
pub fn is_valid_char(c: u8) -> bool {
    REVERSE[c as usize] != INVALID
}

/// Encodes `bytes` as nixbase32.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let low = bytes[i] as u16 >> j;
        let high = if i + 1 < bytes.len() {
            (bytes[i + 1] as u16) << (8 - j)
        } else {
            0
        };
        out.push(ALPHABET[((low | high) & 0x1f) as usize] as char);
    }
    out
}

/// Decodes into exactly `N` bytes; the input must be exactly `encoded_len(N)` long.
pub fn decode_fixed<const N: usize>(s: &[u8]) -> Result<[u8; N], DecodeError> {
    let mut out = [0u8; N];
    decode_into(s, &mut out)?;
    Ok(out)
}

/// Decodes a string whose length is a valid encoding length.
pub fn decode(s: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let bytes = decoded_len(s.len()).ok_or(DecodeError::InvalidLength {
        actual: s.len(),
        expected: encoded_len(s.len() * 5 / 8),
    })?;
    let mut out = vec![0u8; bytes];
    decode_into(s, &mut out)?;
    Ok(out)
}

fn decode_into(s: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    let expected = encoded_len(out.len());
    if s.len() != expected {
        return Err(DecodeError::InvalidLength {
            actual: s.len(),
            expected,
        });
    }
    for (n, &c) in s.iter().rev().enumerate() {
        let digit = REVERSE[c as usize];
        if digit == INVALID {
            return Err(DecodeError::InvalidChar {
                char: c as char,
                position: s.len() - 1 - n,
            });
        }
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        out[i] |= digit << j;
        let carry = (digit as u16) >> (8 - j);
        if i + 1 < out.len() {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(DecodeError::TrailingBits { bytes: out.len() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // sha256("") as Nix prints it.
        let empty_sha256 = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ];
        let s = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
        assert_eq!(encode(&empty_sha256), s);
        assert_eq!(decode_fixed::<32>(s.as_bytes()).unwrap(), empty_sha256);
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x1f]), "0z");
    }

    #[test]
    fn round_trips_every_length() {
        for len in 0..64usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let s = encode(&bytes);
            assert_eq!(s.len(), encoded_len(len));
            assert_eq!(decode(s.as_bytes()).unwrap(), bytes);
        }
    }

    #[test]
    fn rejects_bad_characters_and_lengths() {
        let mut s = encode(&[7u8; 20]).into_bytes();
        s[3] = b'e';
        assert_eq!(
            decode_fixed::<20>(&s),
            Err(DecodeError::InvalidChar {
                char: 'e',
                position: 3
            })
        );
        assert!(matches!(
            decode_fixed::<20>(b"abc"),
            Err(DecodeError::InvalidLength { .. })
        ));
        // 32 chars is 160 bits: 'z' in the first position sets bits beyond 20 bytes? No:
        // 32*5 = 160 = 20*8 exactly, so every string is valid. 52 chars carry 260 bits
        // for 256, so a high first digit overflows.
        let mut over = vec![b'0'; 52];
        over[0] = b'z';
        assert_eq!(
            decode_fixed::<32>(&over),
            Err(DecodeError::TrailingBits { bytes: 32 })
        );
    }
}
