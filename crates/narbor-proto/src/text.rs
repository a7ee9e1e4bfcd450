//! Untrusted text made fit to show: cut to a length for an error message or
//! a log line. Every crate shortens what it quotes through [`shorten`], so a
//! long or multi-byte input is cut the same way everywhere, and never inside
//! a character.

/// `s` cut to at most `max_chars` characters, with `…` after when it was cut.
pub fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_characters_not_bytes() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc…");
        assert_eq!(shorten("", 0), "");
        assert_eq!(shorten("a", 0), "…");
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("日本語", 3), "日本語");
    }
}
