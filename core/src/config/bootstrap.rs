//! Where the bootstrap relays come from: the argument, else `QUEUEXEC_BOOTSTRAP`, else `.env`.

use std::path::{Path, PathBuf};

use super::{DEFAULT_ENV_FILE, read_dotenv};
use crate::error::{Error, Result};

/// Environment variable (and `.env` key) with bootstrap relay addresses, comma separated.
pub const BOOTSTRAP_VAR: &str = "QUEUEXEC_BOOTSTRAP";

/// Splits a comma-separated list of multiaddrs, dropping blanks.
pub fn split_bootstrap(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Resolves the bootstrap relays: `explicit` (each a multiaddr; blanks ignored) when it names
/// any, else the environment variable [`BOOTSTRAP_VAR`], else that key in the `.env` file
/// `env_file` (default `./.env`, which may be missing). Each must be a multiaddr ending in
/// `/p2p/<relay peer id>`, as `queuexec relay` prints it. An empty list: no bootstrap.
///
/// # Errors
/// [`Error::Config`] naming an address that is not a multiaddr or has no peer id, or a named
/// `env_file` that does not exist or is not valid `.env`.
pub fn resolve_bootstrap(explicit: &[String], env_file: Option<&Path>) -> Result<Vec<String>> {
    let mut list: Vec<String> = explicit.iter().flat_map(|e| split_bootstrap(e)).collect();
    if list.is_empty() {
        list = std::env::var(BOOTSTRAP_VAR)
            .map(|v| split_bootstrap(&v))
            .unwrap_or_default();
    }
    if list.is_empty() {
        let path: PathBuf =
            env_file.map_or_else(|| PathBuf::from(DEFAULT_ENV_FILE), Path::to_path_buf);
        match read_dotenv(&path)? {
            Some(pairs) => {
                if let Some((_, value)) = pairs.iter().rev().find(|(k, _)| k == BOOTSTRAP_VAR) {
                    list = split_bootstrap(value);
                }
            }
            None if env_file.is_some() => {
                return Err(Error::config(format!(
                    "the .env file {} does not exist; give the path of an existing file",
                    path.display()
                )));
            }
            None => {}
        }
    }
    for text in &list {
        crate::net::parse_relay(text)?;
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str =
        "/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";

    #[test]
    fn explicit_addresses_win_and_commas_split_them() {
        let got = resolve_bootstrap(&[format!("{RELAY}, {RELAY}")], None).expect("valid");
        assert_eq!(got, vec![RELAY.to_owned(), RELAY.to_owned()]);
    }

    #[test]
    fn the_env_file_is_read_when_nothing_else_names_a_relay() {
        if std::env::var_os(BOOTSTRAP_VAR).is_some() {
            return; // the environment would win; covered by the test above
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join(".env");
        std::fs::write(&env, format!("token=x\nQUEUEXEC_BOOTSTRAP={RELAY}\n")).expect("write");
        let got = resolve_bootstrap(&[], Some(&env)).expect("valid");
        assert_eq!(got, vec![RELAY.to_owned()]);
    }

    #[test]
    fn an_address_without_a_peer_id_says_what_to_use() {
        let err = resolve_bootstrap(&["/ip4/198.51.100.1/tcp/4001".into()], None)
            .expect_err("no peer id");
        let text = err.to_string();
        assert!(text.contains("/p2p/"), "{text}");
        assert!(text.contains("queuexec relay"), "{text}");
        let err = resolve_bootstrap(&["relay.example.com:4001".into()], None).expect_err("bad");
        assert!(err.to_string().contains("not a multiaddr"), "{err}");
    }
}
