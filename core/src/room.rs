//! Same-host discovery: the room file.
//!
//! queue-xec's constructors take no address, so a master and workers on one machine must find
//! each other with nothing but the token. The master writes its loopback addresses to a file
//! named by the room id (SHA-256 of the token) in a per-user directory; workers read it. No
//! multicast, no configuration. The directory is `QUEUEXEC_ROOM_DIR` when set, else
//! `$XDG_RUNTIME_DIR/queuexec/rooms`, else the user's cache directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Environment variable that overrides the room directory.
pub(crate) const ROOM_DIR_ENV: &str = "QUEUEXEC_ROOM_DIR";

/// What a master announces in its room file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoomEntry {
    /// The master's peer id.
    pub(crate) peer_id: String,
    /// Dialable addresses, each ending in `/p2p/<peer id>`.
    pub(crate) addrs: Vec<String>,
    /// The master's process id (so a stale file can be told apart).
    pub(crate) pid: u32,
}

/// The room directory to use: `explicit`, else the environment, else the per-user default.
pub(crate) fn room_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os(ROOM_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::runtime_dir()
        .or_else(dirs::cache_dir)
        .unwrap_or_else(std::env::temp_dir)
        .join("queuexec")
        .join("rooms")
}

fn room_file(dir: &Path, room_id: &str) -> PathBuf {
    dir.join(format!("{room_id}.json"))
}

/// Writes (atomically) the master's entry for `room_id`.
pub(crate) fn announce(dir: &Path, room_id: &str, entry: &RoomEntry) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the room directory", dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Other users on the host have no business reading which rooms exist.
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let path = room_file(dir, room_id);
    let json = serde_json::to_vec_pretty(entry)
        .map_err(|e| Error::config_from("could not encode the room entry", e))?;
    // A fresh file under a random name (created exclusively, so a link planted in the
    // directory is never followed), renamed over the room file (which replaces a link there
    // rather than writing through it).
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{room_id}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io("creating a temporary room file in", dir, e))?;
    std::io::Write::write_all(&mut tmp, &json).map_err(|e| Error::io("writing", tmp.path(), e))?;
    tmp.persist(&path)
        .map_err(|e| Error::io("renaming into place", &path, e.error))?;
    Ok(path)
}

/// Reads the entry for `room_id`, if a master announced one.
pub(crate) fn lookup(dir: &Path, room_id: &str) -> Option<RoomEntry> {
    let bytes = std::fs::read(room_file(dir, room_id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes the room file if it is still this master's.
pub(crate) fn withdraw(dir: &Path, room_id: &str, peer_id: &str) {
    if lookup(dir, room_id).is_some_and(|e| e.peer_id == peer_id) {
        let _ = std::fs::remove_file(room_file(dir, room_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_lookup_withdraw() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entry = RoomEntry {
            peer_id: "12D3".into(),
            addrs: vec!["/ip4/127.0.0.1/tcp/1/p2p/12D3".into()],
            pid: 1,
        };
        assert_eq!(lookup(dir.path(), "room"), None);
        announce(dir.path(), "room", &entry).expect("announce");
        assert_eq!(lookup(dir.path(), "room"), Some(entry));
        withdraw(dir.path(), "room", "someone-else");
        assert!(
            lookup(dir.path(), "room").is_some(),
            "another master's file is left alone"
        );
        withdraw(dir.path(), "room", "12D3");
        assert_eq!(lookup(dir.path(), "room"), None);
    }

    #[cfg(unix)]
    #[test]
    fn announcing_never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let victim = outside.path().join("victim.txt");
        std::fs::write(&victim, "precious").expect("write");
        // Links at the names an announce used to write to, planted before the master starts.
        for name in [
            format!(".room.{}.tmp", std::process::id()),
            "room.json".to_string(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).expect("symlink");
        }
        let entry = RoomEntry {
            peer_id: "12D3".into(),
            addrs: vec!["/ip4/127.0.0.1/tcp/1/p2p/12D3".into()],
            pid: 1,
        };
        announce(dir.path(), "room", &entry).expect("announce");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("read"),
            "precious",
            "the file outside the room directory is untouched"
        );
        assert_eq!(lookup(dir.path(), "room"), Some(entry));
        assert!(
            !std::fs::symlink_metadata(dir.path().join("room.json"))
                .expect("room file")
                .file_type()
                .is_symlink(),
            "the room file is a file of its own"
        );
    }
}
