//! The `Key: value` line format shared by `.narinfo` and `nix-cache-info`.
//!
//! This module owns splitting a document into numbered fields and the rules
//! common to both formats: every line is `Key: value` split at the first `": "`,
//! blank lines are allowed only at the end, the final newline is optional. What
//! the keys mean belongs to the callers.

use thiserror::Error;

/// One `Key: value` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    /// 1-based line number.
    pub line: usize,
    pub key: &'a str,
    pub value: &'a str,
}

/// Why a line is not a field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    #[error("expected `Key: value`, found {0:?}")]
    NoSeparator(String),
    #[error("empty field name")]
    EmptyKey,
    #[error("blank line inside the document")]
    BlankLine,
}

/// A field, or the 1-based line number and what is wrong with that line.
pub(crate) type FieldResult<'a> = Result<Field<'a>, (usize, LineError)>;

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// The fields of `s`, in order; errors carry the 1-based line number.
pub(crate) fn fields(s: &str) -> impl Iterator<Item = FieldResult<'_>> {
    // Lines after the last non-blank one are the allowed trailing blank lines.
    let content_lines = s
        .split('\n')
        .enumerate()
        .filter(|(_, l)| !is_blank(l))
        .last()
        .map_or(0, |(i, _)| i + 1);
    s.split('\n').take(content_lines).enumerate().map(|(i, l)| {
        let line = i + 1;
        if is_blank(l) {
            return Err((line, LineError::BlankLine));
        }
        let (key, value) = l
            .split_once(": ")
            .ok_or_else(|| (line, LineError::NoSeparator(crate::store_path::truncate(l))))?;
        if key.is_empty() {
            return Err((line, LineError::EmptyKey));
        }
        Ok(Field { line, key, value })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Triple<'a> = (usize, &'a str, &'a str);

    fn collect(s: &str) -> Result<Vec<Triple<'_>>, (usize, LineError)> {
        fields(s)
            .map(|r| r.map(|f| (f.line, f.key, f.value)))
            .collect()
    }

    #[test]
    fn splits_at_first_separator() {
        assert_eq!(
            collect("A: b: c\nD: \nE: f").unwrap(),
            [(1, "A", "b: c"), (2, "D", ""), (3, "E", "f")]
        );
    }

    #[test]
    fn trailing_blank_lines_are_fine() {
        assert_eq!(collect("A: b\n\n\n  \n").unwrap(), [(1, "A", "b")]);
        assert_eq!(collect("").unwrap(), []);
        assert_eq!(collect("\n\n").unwrap(), []);
    }

    #[test]
    fn errors_carry_line_numbers() {
        assert_eq!(collect("A: b\n\nC: d\n"), Err((2, LineError::BlankLine)));
        assert_eq!(
            collect("A: b\nC:d\n"),
            Err((2, LineError::NoSeparator("C:d".into())))
        );
        assert_eq!(
            collect("A: b\nC:\n"),
            Err((2, LineError::NoSeparator("C:".into())))
        );
        assert_eq!(collect(": x\n"), Err((1, LineError::EmptyKey)));
    }
}
