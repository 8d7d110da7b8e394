//! A node's libp2p identity kept in a file, so that its peer id (and every `/p2p/` address
//! naming it) stays the same across restarts: a relay's printed address stays valid, and a
//! master restarted on its store re-registers at the rendezvous under the same peer id,
//! replacing its old registration instead of leaving a stale one beside it.
//!
//! The file holds the Ed25519 keypair in libp2p's protobuf encoding. It is created on first use
//! readable by its owner only (0600), written whole to a temporary file and linked into place
//! without replacing anything, so two processes starting at once end up with one key.

use std::io::Write;
use std::path::Path;

use libp2p::identity::Keypair;

use crate::error::{Error, Result};

/// Reads the keypair in `path`, or makes one and writes it there when the file does not exist.
pub(crate) fn load_or_create(path: &Path) -> Result<Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => return decode(path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("reading the identity file", path, e)),
    }
    let keypair = Keypair::generate_ed25519();
    let encoded = keypair
        .to_protobuf_encoding()
        .map_err(|e| Error::config_from("cannot encode the new identity", e))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // tempfile creates the file 0600 on Unix.
    let mut temp = tempfile::Builder::new()
        .prefix(".identity-")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::io(
                "creating the identity file (does its folder exist and is it writable?)",
                dir,
                e,
            )
        })?;
    temp.write_all(&encoded)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| Error::io("writing the identity file", temp.path().to_path_buf(), e))?;
    match temp.persist_noclobber(path) {
        Ok(_) => {
            tracing::info!(path = %path.display(), peer = %keypair.public().to_peer_id(), "made a new identity");
            Ok(keypair)
        }
        // Another process made it first: use theirs.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes =
                std::fs::read(path).map_err(|e| Error::io("reading the identity file", path, e))?;
            decode(path, &bytes)
        }
        Err(e) => Err(Error::io("creating the identity file", path, e.error)),
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Keypair> {
    warn_if_open(path);
    Keypair::from_protobuf_encoding(bytes).map_err(|e| {
        Error::config_from(
            format!(
                "{} is not a queuexec identity file (a libp2p keypair); move it away and a new one is made (the peer id then changes)",
                path.display()
            ),
            e,
        )
    })
}

/// A key others may read is a key others may use to pose as this node.
fn warn_if_open(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the identity file is readable by others; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.key");
        let first = load_or_create(&path).expect("identity");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(
                mode, 0o600,
                "the key file must be readable by its owner only"
            );
        }
        let again = load_or_create(&path).expect("identity");
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        let other = load_or_create(&dir.path().join("other.key")).expect("identity");
        assert_ne!(first.public().to_peer_id(), other.public().to_peer_id());
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "hello").expect("write");
        let e = load_or_create(&path).expect_err("refused").to_string();
        assert!(
            e.contains("notes.txt") && e.contains("not a queuexec identity file"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"hello",
            "the file must be left alone"
        );
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope/relay.key");
        let e = load_or_create(&path).expect_err("refused").to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
