//! Showing text that peers control on the user's terminal, and whether log lines get colour.
//!
//! Worker names, job ids and error messages come from other machines. Printed raw, an escape
//! sequence in them could retitle or clear the terminal, move the cursor, or fake log lines.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character (and every bidirectional override, which reorders what
/// the reader sees) written as a Rust-style escape such as `\u{1b}`, `\n` or `\u{202e}`.
pub(crate) fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether log lines get ANSI colour: only on a terminal, and never when `NO_COLOR` is set
/// to a non-empty value (<https://no-color.org>).
pub(crate) fn colour_logs(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert!(matches!(
            escape_control("worker-1 é ✓"),
            Cow::Borrowed("worker-1 é ✓")
        ));
        assert_eq!(
            escape_control("a\u{1b}]0;x\u{7}b\r\nc\u{202e}d"),
            "a\\u{1b}]0;x\\u{7}b\\r\\nc\\u{202e}d"
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour_logs(true, None));
        assert!(colour_logs(true, Some(OsStr::new(""))));
        assert!(!colour_logs(true, Some(OsStr::new("1"))));
        assert!(!colour_logs(false, None));
    }
}
