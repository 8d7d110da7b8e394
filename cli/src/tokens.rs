//! `queuexec setup` and the token flags. The rules (argument, then environment, then `.env`;
//! the length rule; generation; writing `.env` safely) are the core's
//! ([`queuexec_core::config`]); this file only asks on a terminal.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use queuexec_core::config::{
    self, DEFAULT_ENV_FILE, TOKEN_VAR, TRANSFER_TOKEN_VAR, Tokens, env_file_has_tokens,
    generate_tokens, write_tokens_to_env_file,
};

/// Takes each token from its flag, else the environment, else `env_file` (default `./.env`).
pub(crate) fn resolve(
    token: Option<&str>,
    transfer: Option<&str>,
    env_file: Option<&Path>,
) -> Result<Tokens> {
    Ok(config::resolve_tokens(token, transfer, env_file)?)
}

/// `queuexec setup`: writes fresh tokens to the env file, keeping its other lines.
pub(crate) fn setup(env_file: Option<PathBuf>, force: bool) -> Result<()> {
    let path = env_file.unwrap_or_else(|| PathBuf::from(DEFAULT_ENV_FILE));
    if env_file_has_tokens(&path)? && !force {
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
    write_tokens_to_env_file(&path, &generate_tokens())?;
    eprintln!(
        "wrote {TOKEN_VAR} and {TRANSFER_TOKEN_VAR} to {}; copy the same two lines to every worker",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_keeps_other_lines_and_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        std::fs::write(&env, "LOG_LEVEL=info\n").expect("write");
        setup(Some(env.clone()), false).expect("first setup");
        let text = std::fs::read_to_string(&env).expect("read");
        assert!(text.contains("LOG_LEVEL=info"));
        let tokens = resolve(None, None, Some(&env)).expect("resolve");
        assert_eq!(tokens.token.len(), config::GENERATED_TOKEN_CHARS);
        assert_eq!(tokens.transfer_token.len(), config::GENERATED_TOKEN_CHARS);
        // No terminal in tests: a second setup refuses, and the tokens stay.
        assert!(setup(Some(env.clone()), false).is_err());
        assert_eq!(std::fs::read_to_string(&env).expect("read"), text);
        setup(Some(env.clone()), true).expect("forced");
        assert_ne!(std::fs::read_to_string(&env).expect("read"), text);
    }
}
