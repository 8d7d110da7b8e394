//! Where tokens come from (flag, environment, `.env`) and `queuexec setup`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The two secrets every master and worker needs.
pub(crate) struct Tokens {
    pub(crate) token: String,
    pub(crate) transfer_token: String,
}

/// queue-xec's names for the variables, kept so existing `.env` files work.
pub(crate) const TOKEN_VAR: &str = "token";
pub(crate) const TRANSFER_VAR: &str = "transferEncryptToken";

/// Takes each token from its flag, else the environment, else `env_file` (default `./.env`).
pub(crate) fn resolve(
    token: Option<String>,
    transfer: Option<String>,
    env_file: Option<&Path>,
) -> Result<Tokens> {
    let file_values = read_env_file(env_file.unwrap_or(Path::new(".env")))?;
    let pick = |flag: Option<String>, var: &str| -> Option<String> {
        flag.or_else(|| std::env::var(var).ok())
            .or_else(|| {
                file_values
                    .iter()
                    .find(|(k, _)| k == var)
                    .map(|(_, v)| v.clone())
            })
            .filter(|v| !v.trim().is_empty())
    };
    let Some(token) = pick(token, TOKEN_VAR) else {
        bail!(
            "no room token: pass --token, set the environment variable `{TOKEN_VAR}`, or put it in .env (run `queuexec setup` to create one)"
        );
    };
    let Some(transfer_token) = pick(transfer, TRANSFER_VAR) else {
        bail!(
            "no transfer token: pass --transfer-token, set `{TRANSFER_VAR}`, or put it in .env (run `queuexec setup` to create one)"
        );
    };
    Ok(Tokens {
        token,
        transfer_token,
    })
}

/// Reads `KEY=value` pairs of a dotenv file; a missing file is empty.
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>> {
    match dotenvy::from_path_iter(path) {
        Ok(iter) => iter
            .map(|item| {
                item.with_context(|| format!("{} is not a valid .env file", path.display()))
            })
            .collect(),
        Err(e) if e.not_found() => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `len` random letters and digits.
pub(crate) fn random_alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in queuexec_core::random_bytes::<64>() {
            // 248 = 4 * 62: rejecting above it keeps every character equally likely.
            if byte < 248 && out.len() < len {
                out.push(ALPHABET[(byte % 62) as usize] as char);
            }
        }
    }
    out
}

/// `queuexec setup`: writes fresh tokens to the env file, keeping its other lines.
pub(crate) fn setup(env_file: Option<PathBuf>, force: bool) -> Result<()> {
    let path = env_file.unwrap_or_else(|| PathBuf::from(".env"));
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let has_tokens = existing.as_deref().is_some_and(|text| {
        text.lines().any(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            key == TOKEN_VAR || key == TRANSFER_VAR
        })
    });
    if has_tokens && !force {
        if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            eprint!(
                "{} already holds tokens; overwrite them? [y/N] ",
                path.display()
            );
            std::io::stderr().flush().ok();
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
                eprintln!("left {} unchanged", path.display());
                return Ok(());
            }
        } else {
            bail!(
                "{} already holds tokens; pass --force to overwrite them (no terminal to ask on)",
                path.display()
            );
        }
    }
    let token = random_alphanumeric(24);
    let transfer = random_alphanumeric(32);
    let mut lines: Vec<String> = existing
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            key != TOKEN_VAR && key != TRANSFER_VAR
        })
        .map(str::to_string)
        .collect();
    lines.push(format!("{TOKEN_VAR}={token}"));
    lines.push(format!("{TRANSFER_VAR}={transfer}"));
    let mut text = lines.join("\n");
    text.push('\n');
    write_private(&path, &text)?;
    eprintln!(
        "wrote {TOKEN_VAR} and {TRANSFER_VAR} to {}; copy the same two lines to every worker",
        path.display()
    );
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_alphanumeric_and_differ() {
        let a = random_alphanumeric(32);
        let b = random_alphanumeric(32);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn setup_keeps_other_lines_and_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        std::fs::write(&env, "LOG_LEVEL=info\n").expect("write");
        setup(Some(env.clone()), false).expect("first setup");
        let text = std::fs::read_to_string(&env).expect("read");
        assert!(text.contains("LOG_LEVEL=info"));
        let values = read_env_file(&env).expect("parse");
        let token = values
            .iter()
            .find(|(k, _)| k == TOKEN_VAR)
            .map(|(_, v)| v.clone())
            .expect("token");
        let transfer = values
            .iter()
            .find(|(k, _)| k == TRANSFER_VAR)
            .map(|(_, v)| v.clone())
            .expect("transfer");
        assert!(token.len() >= 20);
        assert_eq!(transfer.len(), 32);
        // No terminal in tests: a second setup refuses, and the tokens stay.
        assert!(setup(Some(env.clone()), false).is_err());
        assert_eq!(std::fs::read_to_string(&env).expect("read"), text);
        setup(Some(env.clone()), true).expect("forced");
        assert_ne!(std::fs::read_to_string(&env).expect("read"), text);
    }
}
