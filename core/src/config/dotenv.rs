//! The one `.env` parser every front end uses (CLI, Node, Python).
//!
//! The grammar, one `KEY=value` per line:
//! - blank lines and lines whose first non-blank character is `#` are skipped;
//! - `export KEY=value` is the same as `KEY=value` (so the file can be `source`d by a shell);
//! - a key is letters, digits, `_`, `.` and `-`, not starting with a digit; blanks around `=`
//!   are ignored;
//! - a value in single quotes is taken literally; in double quotes `\n`, `\r`, `\t`, `\"` and
//!   `\\` are escapes; after the closing quote only blanks and a `#` comment may follow;
//! - an unquoted value ends at a `#` that follows a blank (a trailing comment), and is trimmed;
//!   `a#b` keeps its `#`;
//! - line ends may be LF or CRLF; a leading UTF-8 byte-order mark is ignored;
//! - no `$VAR` expansion: a value is what the file says (a token containing `$` stays intact);
//! - a key given twice: the last one wins;
//! - a value spans one line: a quote left open is an error, as is any other line that is not
//!   `KEY=value`. Every error names the file and the line.

use std::path::Path;

use crate::error::{Error, Result};

/// Parses `.env` text into its `(key, value)` pairs, in file order (a repeated key appears
/// once per occurrence; the last one is the one that counts). `origin` names the text in error
/// messages (usually the file's path).
///
/// # Errors
/// [`Error::Config`] naming `origin`, the line number and what is wrong with the line.
pub fn parse_dotenv(text: &str, origin: &str) -> Result<Vec<(String, String)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut pairs = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match parse_line(line) {
            Ok(Some(pair)) => pairs.push(pair),
            Ok(None) => {}
            Err(problem) => {
                return Err(Error::config(format!(
                    "{origin}, line {}: {problem}; each line must be KEY=value (optionally \
                     `export KEY=value`, the value in single or double quotes), a `#` comment, \
                     or blank",
                    index + 1
                )));
            }
        }
    }
    Ok(pairs)
}

/// Reads and parses the `.env` file at `path`; `Ok(None)` when there is no such file.
///
/// # Errors
/// [`Error::Io`] when the file exists but cannot be read (or is not UTF-8), and
/// [`Error::Config`] as [`parse_dotenv`].
pub fn read_dotenv(path: &Path) -> Result<Option<Vec<(String, String)>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading the .env file", path, e)),
    };
    parse_dotenv(&text, &path.display().to_string()).map(Some)
}

/// The key a line assigns, if it is an assignment (`KEY=` or `export KEY=`); used to
/// replace lines in place without understanding their values.
pub(crate) fn assigned_key(line: &str) -> Option<&str> {
    let line = line.strip_suffix('\r').unwrap_or(line).trim();
    if line.starts_with('#') {
        return None;
    }
    let (key, rest) = split_key(strip_export(line));
    (!key.is_empty() && rest.trim_start().starts_with('=')).then_some(key)
}

fn parse_line(line: &str) -> std::result::Result<Option<(String, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (key, rest) = split_key(strip_export(line));
    if key.is_empty() {
        return Err(format!("`{line}` does not start with a variable name"));
    }
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("the name `{key}` starts with a digit"));
    }
    let Some(rest) = rest.trim_start().strip_prefix('=') else {
        return Err(format!("`{key}` is not followed by `=`"));
    };
    let value = parse_value(rest.trim_start())?;
    Ok(Some((key.to_owned(), value)))
}

fn strip_export(line: &str) -> &str {
    match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    }
}

fn split_key(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .unwrap_or(line.len());
    line.split_at(end)
}

fn parse_value(rest: &str) -> std::result::Result<String, String> {
    let mut chars = rest.char_indices();
    let (value, after) = match chars.next() {
        Some((_, '\'')) => {
            let body = &rest[1..];
            let Some(close) = body.find('\'') else {
                return Err("the single-quoted value has no closing `'` on this line".to_owned());
            };
            (body[..close].to_owned(), &body[close + 1..])
        }
        Some((_, '"')) => {
            let mut value = String::new();
            let mut escaped = false;
            let mut close = None;
            for (at, c) in chars {
                if escaped {
                    match c {
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        't' => value.push('\t'),
                        '"' | '\\' => value.push(c),
                        other => {
                            value.push('\\');
                            value.push(other);
                        }
                    }
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    close = Some(at);
                    break;
                } else {
                    value.push(c);
                }
            }
            let Some(close) = close else {
                return Err("the double-quoted value has no closing `\"` on this line".to_owned());
            };
            (value, &rest[close + 1..])
        }
        _ => {
            // A `#` starts a comment at the start of the value or after a blank.
            let mut end = rest.len();
            let mut previous_blank = true;
            for (at, c) in rest.char_indices() {
                if c == '#' && previous_blank {
                    end = at;
                    break;
                }
                previous_blank = c == ' ' || c == '\t';
            }
            return Ok(rest[..end].trim_end().to_owned());
        }
    };
    let after = after.trim_start();
    if after.is_empty() || after.starts_with('#') {
        Ok(value)
    } else {
        Err(format!(
            "`{after}` follows the quoted value (only a `#` comment may follow it)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        match parse_dotenv(text, "test.env") {
            Ok(pairs) => pairs,
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    fn one(text: &str) -> String {
        let pairs = parse(text);
        assert_eq!(pairs.len(), 1, "{text:?} gave {pairs:?}");
        pairs[0].1.clone()
    }

    fn error(text: &str) -> String {
        match parse_dotenv(text, "test.env") {
            Ok(pairs) => panic!("{text:?} should be refused, got {pairs:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn plain_and_exported_assignments_give_key_and_value() {
        assert_eq!(
            parse("A=1\nexport B=2\n  export\tC = 3  \n"),
            vec![
                ("A".to_owned(), "1".to_owned()),
                ("B".to_owned(), "2".to_owned()),
                ("C".to_owned(), "3".to_owned())
            ]
        );
    }

    #[test]
    fn export_is_a_key_when_it_is_not_followed_by_a_blank() {
        assert_eq!(parse("export=1"), vec![("export".into(), "1".into())]);
        assert_eq!(parse("exported=1"), vec![("exported".into(), "1".into())]);
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(one(r"A='a # b $HOME \n'"), r"a # b $HOME \n");
    }

    #[test]
    fn double_quotes_keep_hashes_and_understand_escapes() {
        assert_eq!(one(r#"A="a # b""#), "a # b");
        assert_eq!(one(r#"A="x\"y\\z\nw""#), "x\"y\\z\nw");
        assert_eq!(one(r#"A="keep \q""#), r"keep \q");
    }

    #[test]
    fn comments_on_their_own_line_and_after_values_are_dropped() {
        let text =
            "# heading\n   # indented\nA=1 # trailing\nB='q' # after quotes\nC=\"d\"#tight\n";
        assert_eq!(
            parse(text),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "q".into()),
                ("C".into(), "d".into())
            ]
        );
    }

    #[test]
    fn a_hash_inside_an_unquoted_word_is_part_of_the_value() {
        assert_eq!(one("A=a#b"), "a#b");
        assert_eq!(one("A=#starts-a-comment"), "");
    }

    #[test]
    fn blank_lines_and_crlf_line_ends_are_accepted() {
        assert_eq!(
            parse("\r\n\nA=1\r\nB=\"two\"\r\n\r\nC='3'\r\n"),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two".into()),
                ("C".into(), "3".into())
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        assert_eq!(parse("\u{feff}A=1"), vec![("A".into(), "1".into())]);
    }

    #[test]
    fn empty_values_are_empty_strings() {
        assert_eq!(
            parse("A=\nB=''\nC=\"\"\nD= # nothing\n"),
            vec![
                ("A".into(), String::new()),
                ("B".into(), String::new()),
                ("C".into(), String::new()),
                ("D".into(), String::new())
            ]
        );
    }

    #[test]
    fn dollar_signs_are_not_expanded() {
        assert_eq!(one("A=ab$HOME"), "ab$HOME");
        assert_eq!(one("A=\"ab${HOME}\""), "ab${HOME}");
    }

    #[test]
    fn inner_blanks_of_an_unquoted_value_are_kept() {
        assert_eq!(one("A=one two  "), "one two");
    }

    #[test]
    fn keys_may_hold_dots_and_dashes() {
        assert_eq!(parse("a.b-c_D=1"), vec![("a.b-c_D".into(), "1".into())]);
    }

    #[test]
    fn invalid_lines_are_refused_with_the_file_and_line_number() {
        let message = error("A=1\n\ngarbage\n");
        assert!(message.contains("test.env, line 3"), "{message}");
        assert!(
            message.contains("`garbage` is not followed by `=`"),
            "{message}"
        );
        assert!(message.contains("KEY=value"), "{message}");

        let message = error("A=\"open\nB=2");
        assert!(message.contains("line 1"), "{message}");
        assert!(message.contains("no closing `\"`"), "{message}");

        let message = error("A='open");
        assert!(message.contains("no closing `'`"), "{message}");

        let message = error("A='x' junk");
        assert!(
            message.contains("`junk` follows the quoted value"),
            "{message}"
        );

        let message = error("=1");
        assert!(
            message.contains("does not start with a variable name"),
            "{message}"
        );

        let message = error("1A=1");
        assert!(message.contains("starts with a digit"), "{message}");

        let message = error("export A");
        assert!(message.contains("`A` is not followed by `=`"), "{message}");
    }

    #[test]
    fn reading_a_missing_file_gives_none_and_a_present_one_its_pairs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        assert_eq!(read_dotenv(&path).expect("missing is fine"), None);
        std::fs::write(&path, "export A='1'\r\n").expect("write");
        assert_eq!(
            read_dotenv(&path).expect("read"),
            Some(vec![("A".into(), "1".into())])
        );
    }

    #[test]
    fn assigned_key_finds_the_key_of_assignments_only() {
        assert_eq!(assigned_key("export token=abc\r"), Some("token"));
        assert_eq!(
            assigned_key("  transferEncryptToken = 'x'"),
            Some("transferEncryptToken")
        );
        assert_eq!(assigned_key("# token=abc"), None);
        assert_eq!(assigned_key("token"), None);
        assert_eq!(assigned_key(""), None);
    }
}
