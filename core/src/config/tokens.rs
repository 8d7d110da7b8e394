//! The two tokens: where they come from, what makes them valid, how they are generated, and
//! how `setup` stores them in `.env`. The CLI, the npm packages and the Python package all call
//! these, so the rule and its messages are the same in every front end.
//!
//! Resolution, for each token on its own: the argument (a flag, an option), else the
//! environment variable (`token`, `transferEncryptToken`: queue-xec's names), else the `.env`
//! file (`./.env` unless another is named). An empty value counts as not given.
//!
//! Validity: the room token must not be empty or only blanks; the transfer token must have at
//! least [`MIN_TRANSFER_TOKEN_CHARS`] characters. The room token only admits peers to the
//! room; what keeps payloads secret is the transfer token, hence its length rule. Generated
//! tokens are [`GENERATED_TOKEN_CHARS`] letters and digits from the operating system's CSPRNG.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::dotenv::{assigned_key, read_dotenv};
use crate::error::{Error, Result};

/// The environment variable (and `.env` key) of the room token, as queue-xec named it.
pub const TOKEN_VAR: &str = "token";
/// The environment variable (and `.env` key) of the transfer token, as queue-xec named it.
pub const TRANSFER_TOKEN_VAR: &str = "transferEncryptToken";
/// The `.env` file read when none is named, relative to the current directory.
pub const DEFAULT_ENV_FILE: &str = ".env";
/// The fewest characters a transfer token may have.
pub const MIN_TRANSFER_TOKEN_CHARS: usize = 32;
/// How many characters a generated token has (both tokens).
pub const GENERATED_TOKEN_CHARS: usize = 32;

/// How to get tokens, said once for every message that reports a missing or bad one.
const HOW_TO_GET_TOKENS: &str = "`queuexec setup` (or `npx queue-xec-master --setup`) writes \
    both to .env; give the master and its workers the same two values";

/// The two secrets every master and worker needs.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The room token (`token`): peers holding it meet and may join.
    pub token: String,
    /// The transfer token (`transferEncryptToken`): keys the envelope of every message.
    pub transfer_token: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are not printed.
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

/// Checks the room token: it must not be empty or only blanks. It is used exactly as given.
///
/// # Errors
/// [`Error::Token`] saying what is wrong and how to get a token.
pub fn check_room_token(token: &str) -> Result<()> {
    if token.trim().is_empty() {
        return Err(Error::Token(format!(
            "the room token (`{TOKEN_VAR}`) is empty; {HOW_TO_GET_TOKENS}"
        )));
    }
    Ok(())
}

/// Checks the transfer token: at least [`MIN_TRANSFER_TOKEN_CHARS`] characters.
///
/// # Errors
/// [`Error::Token`] giving the rule, the length given and how to get a token.
pub fn check_transfer_token(token: &str) -> Result<()> {
    let chars = token.chars().count();
    if chars < MIN_TRANSFER_TOKEN_CHARS {
        return Err(Error::Token(format!(
            "the transfer token (`{TRANSFER_TOKEN_VAR}`) must have at least \
             {MIN_TRANSFER_TOKEN_CHARS} characters, but the one given has {chars}; \
             {HOW_TO_GET_TOKENS}"
        )));
    }
    Ok(())
}

/// Checks both tokens ([`check_room_token`], then [`check_transfer_token`]).
///
/// # Errors
/// [`Error::Token`] for the first one that is not valid.
pub fn check_tokens(token: &str, transfer_token: &str) -> Result<()> {
    check_room_token(token)?;
    check_transfer_token(transfer_token)
}

/// A fresh token: [`GENERATED_TOKEN_CHARS`] letters and digits, each equally likely, from the
/// operating system's random number generator.
pub fn generate_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(GENERATED_TOKEN_CHARS);
    while out.len() < GENERATED_TOKEN_CHARS {
        for byte in crate::crypto::random_bytes::<64>() {
            // 248 = 4 * 62: rejecting bytes above it keeps every character equally likely.
            if byte < 248 && out.len() < GENERATED_TOKEN_CHARS {
                out.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
    }
    out
}

/// A fresh pair of tokens ([`generate_token`] twice).
pub fn generate_tokens() -> Tokens {
    Tokens {
        token: generate_token(),
        transfer_token: generate_token(),
    }
}

/// Resolves both tokens: each from its argument, else its environment variable, else the
/// `.env` file `env_file` (default `./.env`, which may be missing; a named file must exist).
/// The file is read only when an argument and the environment leave a token missing. Both
/// tokens are then checked ([`check_tokens`]).
///
/// # Errors
/// - [`Error::Token`] when a token is found nowhere (naming the three places) or is invalid;
/// - [`Error::Config`] when `env_file` names a file that does not exist, or the file is not
///   valid `.env` (with its line number); [`Error::Io`] when it cannot be read.
pub fn resolve_tokens(
    token: Option<&str>,
    transfer_token: Option<&str>,
    env_file: Option<&Path>,
) -> Result<Tokens> {
    resolve_with(token, transfer_token, env_file, |var| {
        std::env::var(var).ok()
    })
}

/// [`resolve_tokens`] with the environment given as a lookup (tests use their own).
fn resolve_with(
    token: Option<&str>,
    transfer_token: Option<&str>,
    env_file: Option<&Path>,
    environment: impl Fn(&str) -> Option<String>,
) -> Result<Tokens> {
    let given = |argument: Option<&str>, var: &str| {
        argument
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .or_else(|| environment(var).filter(|v| !v.is_empty()))
    };
    let mut room = given(token, TOKEN_VAR);
    let mut transfer = given(transfer_token, TRANSFER_TOKEN_VAR);
    let path: PathBuf = env_file.map_or_else(|| PathBuf::from(DEFAULT_ENV_FILE), Path::to_path_buf);
    if room.is_none() || transfer.is_none() {
        let pairs = match read_dotenv(&path)? {
            Some(pairs) => pairs,
            None if env_file.is_some() => {
                return Err(Error::config(format!(
                    "the .env file {} does not exist; give the path of an existing file, or \
                     none to read .env in the current directory",
                    path.display()
                )));
            }
            None => Vec::new(),
        };
        let from_file = |var: &str| {
            pairs
                .iter()
                .rev()
                .find(|(key, _)| key == var)
                .map(|(_, value)| value.clone())
                .filter(|v| !v.is_empty())
        };
        room = room.or_else(|| from_file(TOKEN_VAR));
        transfer = transfer.or_else(|| from_file(TRANSFER_TOKEN_VAR));
    }
    let missing = |what: &str, var: &str| {
        Error::Token(format!(
            "no {what}: pass it as an argument, set the environment variable `{var}`, or put \
             `{var}=...` in {}; {HOW_TO_GET_TOKENS}",
            path.display()
        ))
    };
    let token = room.ok_or_else(|| missing("room token", TOKEN_VAR))?;
    let transfer_token = transfer.ok_or_else(|| missing("transfer token", TRANSFER_TOKEN_VAR))?;
    check_tokens(&token, &transfer_token)?;
    Ok(Tokens {
        token,
        transfer_token,
    })
}

/// Whether the `.env` file at `path` already assigns either token (a missing file does not).
///
/// # Errors
/// [`Error::Io`] when the file exists but cannot be read.
pub fn env_file_has_tokens(path: &Path) -> Result<bool> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .split('\n')
            .filter_map(assigned_key)
            .any(|key| key == TOKEN_VAR || key == TRANSFER_TOKEN_VAR)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("reading the .env file", path, e)),
    }
}

/// Stores `tokens` in the `.env` file at `path` (what `setup` does): lines that assign either
/// token are replaced in place (a repeated one is dropped), the other lines and the file's
/// line ends (LF or CRLF) are kept, missing assignments are appended. The file is written
/// whole to a new file beside it, readable by its owner only, then renamed over the old one,
/// so a reader never sees half a file. A symbolic link at `path` is refused, not followed.
///
/// # Errors
/// - [`Error::Token`] when the tokens are not valid ([`check_tokens`]) or hold a line break;
/// - [`Error::Config`] when `path` is a symbolic link or not a regular file;
/// - [`Error::Io`] when the file cannot be read or written.
pub fn write_tokens_to_env_file(path: &Path, tokens: &Tokens) -> Result<()> {
    check_tokens(&tokens.token, &tokens.transfer_token)?;
    let token_line = format!("{TOKEN_VAR}={}", env_value(&tokens.token)?);
    let transfer_line = format!(
        "{TRANSFER_TOKEN_VAR}={}",
        env_value(&tokens.transfer_token)?
    );
    let existing = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(Error::config(format!(
                "{} is a symbolic link; setup does not write through links: remove the link or \
                 name the file it points to",
                path.display()
            )));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(Error::config(format!(
                "{} is not a regular file; name a .env file to write the tokens to",
                path.display()
            )));
        }
        Ok(_) => std::fs::read_to_string(path)
            .map_err(|e| Error::io("reading the .env file", path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("reading the .env file", path, e)),
    };
    let newline = if existing.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut lines: Vec<String> = Vec::new();
    let (mut wrote_token, mut wrote_transfer) = (false, false);
    let body = existing.strip_suffix('\n').unwrap_or(&existing);
    for raw in body.split('\n').filter(|_| !existing.is_empty()) {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match assigned_key(line) {
            Some(TOKEN_VAR) if !wrote_token => {
                lines.push(token_line.clone());
                wrote_token = true;
            }
            Some(TRANSFER_TOKEN_VAR) if !wrote_transfer => {
                lines.push(transfer_line.clone());
                wrote_transfer = true;
            }
            Some(TOKEN_VAR | TRANSFER_TOKEN_VAR) => {}
            _ => lines.push(line.to_owned()),
        }
    }
    if !wrote_token {
        lines.push(token_line);
    }
    if !wrote_transfer {
        lines.push(transfer_line);
    }
    let mut text = lines.join(newline);
    text.push_str(newline);

    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // tempfile creates the file with mode 0600 on Unix, and never through an existing path.
    let mut file = tempfile::Builder::new()
        .prefix(".env.queuexec-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a file beside", path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| Error::io("writing the .env file", path, e))?;
    file.persist(path)
        .map_err(|e| Error::io("replacing the .env file", path, e.error))?;
    Ok(())
}

/// A value as `.env` text: bare when it is plain, else double-quoted with escapes.
fn env_value(value: &str) -> Result<String> {
    if value.contains(['\n', '\r']) {
        return Err(Error::Token(
            "a token must not contain a line break; use letters, digits and punctuation".into(),
        ));
    }
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.:/+=@%,".contains(c));
    if plain {
        return Ok(value.to_owned());
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::dotenv::parse_dotenv;

    const TRANSFER: &str = "0123456789abcdef0123456789abcdef";

    fn no_environment(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn generated_tokens_are_32_letters_and_digits_and_differ() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.len(), GENERATED_TOKEN_CHARS);
        assert_eq!(GENERATED_TOKEN_CHARS, 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
        let pair = generate_tokens();
        check_tokens(&pair.token, &pair.transfer_token).expect("generated tokens are valid");
    }

    #[test]
    fn the_room_token_must_not_be_blank() {
        check_room_token("r").expect("one character is enough");
        for blank in ["", "  ", "\t"] {
            let message = check_room_token(blank).expect_err("blank").to_string();
            assert!(
                message.contains("the room token (`token`) is empty"),
                "{message}"
            );
            assert!(message.contains("queuexec setup"), "{message}");
        }
    }

    #[test]
    fn the_transfer_token_needs_32_characters_counted_as_characters() {
        check_transfer_token(TRANSFER).expect("32 is enough");
        let message = check_transfer_token(&TRANSFER[1..])
            .expect_err("31 is not")
            .to_string();
        assert!(message.contains("at least 32 characters"), "{message}");
        assert!(message.contains("the one given has 31"), "{message}");
        // 32 characters of two bytes each: counted as characters, not bytes.
        check_transfer_token(&"é".repeat(32)).expect("32 characters");
        assert!(check_transfer_token(&"é".repeat(16)).is_err());
    }

    #[test]
    fn the_argument_wins_over_the_environment_which_wins_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        std::fs::write(
            &env,
            format!("token=from-file\ntransferEncryptToken=file-{TRANSFER}\n"),
        )
        .expect("write");
        let environment = |var: &str| (var == TOKEN_VAR).then(|| "from-env".to_owned());
        let got = resolve_with(None, None, Some(&env), environment).expect("resolve");
        assert_eq!(got.token, "from-env");
        assert_eq!(got.transfer_token, format!("file-{TRANSFER}"));
        let got = resolve_with(Some("from-arg"), Some(TRANSFER), Some(&env), environment)
            .expect("resolve");
        assert_eq!(got.token, "from-arg");
        assert_eq!(got.transfer_token, TRANSFER);
    }

    #[test]
    fn empty_values_count_as_not_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        std::fs::write(
            &env,
            format!("token=file\ntransferEncryptToken={TRANSFER}\n"),
        )
        .expect("write");
        let environment = |_: &str| Some(String::new());
        let got = resolve_with(Some(""), Some(""), Some(&env), environment).expect("resolve");
        assert_eq!(got.token, "file");
        assert_eq!(got.transfer_token, TRANSFER);
    }

    #[test]
    fn the_file_is_not_read_when_arguments_give_both_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        std::fs::write(&env, "not a dotenv line\n").expect("write");
        resolve_with(Some("r"), Some(TRANSFER), Some(&env), no_environment)
            .expect("the broken file is never read");
        let message = resolve_with(Some("r"), None, Some(&env), no_environment)
            .expect_err("now it is read")
            .to_string();
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn a_missing_token_names_every_place_it_may_come_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        std::fs::write(&env, "OTHER=1\n").expect("write");
        let message = resolve_with(None, Some(TRANSFER), Some(&env), no_environment)
            .expect_err("no room token")
            .to_string();
        assert!(message.starts_with("no room token"), "{message}");
        assert!(message.contains("argument"), "{message}");
        assert!(
            message.contains("environment variable `token`"),
            "{message}"
        );
        assert!(message.contains(&env.display().to_string()), "{message}");
        let message = resolve_with(Some("r"), None, Some(&env), no_environment)
            .expect_err("no transfer token")
            .to_string();
        assert!(message.starts_with("no transfer token"), "{message}");
        assert!(message.contains("`transferEncryptToken`"), "{message}");
    }

    #[test]
    fn resolved_tokens_are_checked() {
        let message = resolve_with(Some("r"), Some("short"), None, no_environment)
            .expect_err("short transfer token")
            .to_string();
        assert!(message.contains("at least 32 characters"), "{message}");
    }

    #[test]
    fn a_named_env_file_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.env");
        let message = resolve_with(None, None, Some(&missing), no_environment)
            .expect_err("missing file")
            .to_string();
        assert!(message.contains("does not exist"), "{message}");
        assert!(message.contains("nope.env"), "{message}");
    }

    #[test]
    fn setup_keeps_other_lines_and_line_ends_and_replaces_tokens_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        std::fs::write(
            &env,
            "# settings\r\nLOG_LEVEL=info\r\nexport token=old\r\nA=1\r\ntoken=older\r\n",
        )
        .expect("write");
        assert!(env_file_has_tokens(&env).expect("read"));
        let tokens = generate_tokens();
        write_tokens_to_env_file(&env, &tokens).expect("write tokens");
        let text = std::fs::read_to_string(&env).expect("read");
        assert_eq!(
            text,
            format!(
                "# settings\r\nLOG_LEVEL=info\r\ntoken={}\r\nA=1\r\ntransferEncryptToken={}\r\n",
                tokens.token, tokens.transfer_token
            )
        );
        let pairs = parse_dotenv(&text, "env").expect("parse");
        assert!(pairs.contains(&("token".into(), tokens.token.clone())));
        let got = resolve_with(None, None, Some(&env), no_environment).expect("resolve");
        assert_eq!(got, tokens);
    }

    #[test]
    fn setup_creates_a_missing_file_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        assert!(!env_file_has_tokens(&env).expect("missing file"));
        let tokens = generate_tokens();
        write_tokens_to_env_file(&env, &tokens).expect("write tokens");
        assert!(env_file_has_tokens(&env).expect("read"));
        let got = resolve_with(None, None, Some(&env), no_environment).expect("resolve");
        assert_eq!(got, tokens);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&env).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn setup_refuses_a_symbolic_link_and_leaves_its_target_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "KEEP=1\n").expect("write");
        let link = dir.path().join(".env");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let message = write_tokens_to_env_file(&link, &generate_tokens())
            .expect_err("a link")
            .to_string();
        assert!(message.contains("symbolic link"), "{message}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "KEEP=1\n");
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("stat")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn setup_quotes_tokens_that_are_not_plain_and_refuses_line_breaks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        let tokens = Tokens {
            token: "room with # and \"quotes\"".into(),
            transfer_token: format!("{TRANSFER} $x"),
        };
        write_tokens_to_env_file(&env, &tokens).expect("write tokens");
        let got = resolve_with(None, None, Some(&env), no_environment).expect("resolve");
        assert_eq!(got, tokens);
        let broken = Tokens {
            token: "a\nb".into(),
            transfer_token: TRANSFER.into(),
        };
        let message = write_tokens_to_env_file(&env, &broken)
            .expect_err("line break")
            .to_string();
        assert!(message.contains("line break"), "{message}");
        assert_eq!(
            resolve_with(None, None, Some(&env), no_environment).expect("unchanged"),
            tokens
        );
    }

    #[test]
    fn setup_refuses_invalid_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        let short = Tokens {
            token: "r".into(),
            transfer_token: "short".into(),
        };
        assert!(write_tokens_to_env_file(&env, &short).is_err());
        assert!(!env.exists());
    }
}
