//! `Range: bytes=...` on stored objects: one range, or none.

/// What to send of an object of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// No (usable) Range header: the whole object, 200.
    Full,
    /// One satisfiable range `[start, end)`: 206.
    Partial { start: u64, end: u64 },
    /// A range that cannot be satisfied: 416.
    Unsatisfiable,
}

/// Interprets a Range header. Several ranges, other units and syntax errors are
/// ignored (the whole object is sent), as RFC 9110 allows.
pub fn decide(header: Option<&str>, len: u64) -> RangeDecision {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeDecision::Full;
    };
    if spec.contains(',') {
        return RangeDecision::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeDecision::Full;
    };
    let parse = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // bytes=-N: the last N bytes.
        return match parse(last) {
            None => RangeDecision::Full,
            Some(0) => RangeDecision::Unsatisfiable,
            Some(_) if len == 0 => RangeDecision::Unsatisfiable,
            Some(n) => RangeDecision::Partial {
                start: len.saturating_sub(n),
                end: len,
            },
        };
    }
    let Some(start) = parse(first) else {
        return RangeDecision::Full;
    };
    let end = if last.is_empty() {
        len
    } else {
        match parse(last) {
            Some(b) if b >= start => b.saturating_add(1).min(len),
            _ => return RangeDecision::Full,
        }
    };
    if start >= len {
        RangeDecision::Unsatisfiable
    } else {
        RangeDecision::Partial { start, end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeDecision::*;

    #[test]
    fn ranges() {
        assert_eq!(decide(None, 10), Full);
        assert_eq!(decide(Some("bytes=0-3"), 10), Partial { start: 0, end: 4 });
        assert_eq!(decide(Some("bytes=4-"), 10), Partial { start: 4, end: 10 });
        assert_eq!(decide(Some("bytes=-3"), 10), Partial { start: 7, end: 10 });
        assert_eq!(decide(Some("bytes=-30"), 10), Partial { start: 0, end: 10 });
        assert_eq!(
            decide(Some("bytes=5-100"), 10),
            Partial { start: 5, end: 10 }
        );
        assert_eq!(decide(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(decide(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(decide(Some("bytes=5-2"), 10), Full);
        assert_eq!(decide(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(decide(Some("items=0-1"), 10), Full);
        assert_eq!(decide(Some("bytes=x-1"), 10), Full);
        assert_eq!(decide(Some("bytes=1-x"), 10), Full);
        assert_eq!(decide(Some("bytes=-"), 10), Full);
    }
}
