//! Files on disk that others must not read: secret files (TLS and DKIM
//! keys, admin keys, SRS and activation secrets) are read only when no user
//! but their owner may read or write them, and the relay's own directories
//! and store are created for its user alone (0700, 0600).
//!
//! Policy for secret files the operator configures: refused, not
//! tightened, when another user could read or change them. The file may be
//! shared on purpose (another service, a group), so changing it behind the
//! operator's back could break that service or hide the exposure; refusing
//! names the file and its mode. Allowed: owned by the relay's user or by
//! root, no permission for others, no group write, and group read only for
//! a root-owned file whose group is the relay's own group when the relay
//! does not run as root (the packaged `root:eas-relay 0640` layout, where
//! root manages the key and the relay only reads it).
//!
//! Secrets the relay generated itself into its data directory are its own,
//! like the store: one that an older version or a hand left wider is made
//! 0600 and logged (refusing it would stop an upgrade from starting).
//!
//! New secret files are created with `O_CREAT | O_EXCL` under a fresh
//! random name and then linked or renamed into place, so a symlink or file
//! planted at the path (or at a predictable temporary name) is never
//! followed or written through.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Permission bits of others: none may be set on a secret file.
const OTHER_BITS: u32 = 0o007;
/// Permission bits of group and others.
const OPEN_BITS: u32 = 0o077;
/// Group read: allowed only for `root:<relay group>` files.
const GROUP_READ: u32 = 0o040;

/// A secret file that users other than the relay's may read or change.
#[derive(Debug, thiserror::Error)]
pub enum TooOpen {
    #[error(
        "mode {mode:04o} lets users other than its owner read or write it; secret files must be 0600 or 0400 (chmod 600 the file), or 0640 owned by root with the relay's group"
    )]
    Mode { mode: u32 },
    #[error(
        "it is owned by uid {owner}, neither the relay's user (uid {relay}) nor root: that user could change it (chown it to the relay's user)"
    )]
    Owner { owner: u32, relay: u32 },
}

/// The relay process's effective user and group.
fn process_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail and touch no memory of ours.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Whether a file of `mode`, `owner` and `group` may hold a secret for a
/// process running as `uid`/`gid` (see the module policy).
fn secret_file_ok(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> Result<(), TooOpen> {
    if owner != uid && owner != 0 {
        return Err(TooOpen::Owner { owner, relay: uid });
    }
    // A relay running as root reads anything: no group is needed then.
    let group_read_ok = owner == 0 && uid != 0 && group == gid;
    let open = mode & OPEN_BITS;
    if open & OTHER_BITS != 0 || (open & !GROUP_READ) != 0 || (open != 0 && !group_read_ok) {
        return Err(TooOpen::Mode { mode });
    }
    Ok(())
}

/// Reads a secret file, refusing it (`PermissionDenied`, carrying
/// [`TooOpen`]) when another user may read or change it (module policy).
/// Mode and owner are taken from the opened file, so they are the ones of
/// the bytes read.
pub fn read_secret(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let (uid, gid) = process_ids();
    let mode = meta.permissions().mode() & 0o7777;
    secret_file_ok(mode, meta.uid(), meta.gid(), uid, gid)
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read_secret`] for a text file.
pub fn read_secret_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read_secret(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file is not UTF-8 text"))
}

/// Reads a secret the relay generated itself: made 0600 first if it is
/// wider (an older version or a hand left it so), then read like any
/// secret (so one owned by another user is still refused).
pub fn read_own_secret(path: &Path) -> io::Result<Vec<u8>> {
    restrict_own_file(path)?;
    read_secret(path)
}

/// Creates `path` and any missing parents as 0700 (an existing directory
/// is left as it is).
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// The data directory: created 0700; an existing one that others may enter
/// is reported (not changed: it may be a directory the operator shares on
/// purpose; what the relay writes inside is private either way).
pub fn data_dir(path: &Path) -> io::Result<()> {
    if !path.is_dir() {
        return create_private_dir(path);
    }
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & OPEN_BITS != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            "the data directory is open to other users; chmod 700 it"
        );
    }
    Ok(())
}

/// Makes a file of the relay's own (the store, a generated secret) 0600 if
/// it is wider, and says so: it was made by an older version or by hand.
/// A symlink is not followed: it is left for the read to refuse or use.
pub fn restrict_own_file(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_file() && mode & OPEN_BITS != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        tracing::warn!(
            path = %path.display(),
            was = %format!("{mode:04o}"),
            "made the file 0600 (other users could read it; if it is a secret, consider replacing it)"
        );
    }
    Ok(())
}

/// Creates `path` (which must not exist: `O_EXCL`, so a symlink there is
/// not followed either) with `mode`, writes `data` and fsyncs it. The
/// parent directory is created 0700 when missing.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let written = file.write_all(data).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// A fresh name beside `path` for writing before moving into place.
fn temporary_name(path: &Path) -> PathBuf {
    use rand::Rng;
    let nonce: u64 = rand::rng().random();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{nonce:016x}.tmp", std::process::id()))
}

/// Writes a new secret file at `path` (0600) whole or not at all: written
/// under a fresh name, then hard-linked into place, which fails with
/// `AlreadyExists` when `path` exists (a concurrent first start, or a
/// planted symlink: never followed). Without hard links it is renamed into
/// place (which replaces, and does not follow, whatever is at `path`).
pub fn write_secret_new(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = temporary_name(path);
    write_new(&tmp, data, 0o600)?;
    let placed = match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => std::fs::rename(&tmp, path),
        Ok(()) => Ok(()),
    };
    let _ = std::fs::remove_file(&tmp);
    placed
}

/// Writes `path` with `mode`, replacing whatever is there (a symlink is
/// replaced, not followed): written under a fresh name, then renamed.
pub fn replace_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temporary_name(path);
    write_new(&tmp, data, mode)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, mode: u32) {
        std::fs::write(path, b"secret\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn secret_files_open_to_others_are_refused_naming_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        for mode in [0o600, 0o400, 0o700] {
            write(&path, mode);
            assert_eq!(read_secret(&path).unwrap(), b"secret\n", "{mode:o}");
        }
        for mode in [0o644, 0o640, 0o604, 0o660, 0o666, 0o602] {
            write(&path, mode);
            let err = read_secret(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
            assert!(err.to_string().contains(&format!("{mode:04o}")), "{err}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        let missing = read_secret(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn owner_and_group_decide_with_the_mode() {
        let (relay, group, other) = (1000, 1000, 1001);
        // the relay's own files: 0600 / 0400 only
        for mode in [0o600, 0o400, 0o700] {
            assert!(secret_file_ok(mode, relay, group, relay, group).is_ok());
        }
        for mode in [0o640, 0o660, 0o604, 0o644] {
            assert!(secret_file_ok(mode, relay, group, relay, group).is_err());
        }
        // root:<relay group> 0640: root manages the key, the relay reads it
        assert!(secret_file_ok(0o640, 0, group, relay, group).is_ok());
        assert!(secret_file_ok(0o440, 0, group, relay, group).is_ok());
        assert!(secret_file_ok(0o600, 0, 0, relay, group).is_ok());
        // ... but not a group the relay is not in charge of, nor group
        // write, nor anything for others
        assert!(secret_file_ok(0o640, 0, other, relay, group).is_err());
        assert!(secret_file_ok(0o660, 0, group, relay, group).is_err());
        assert!(secret_file_ok(0o644, 0, group, relay, group).is_err());
        assert!(secret_file_ok(0o620, 0, group, relay, group).is_err());
        // a relay running as root needs no group: root:root 0640 is open
        assert!(secret_file_ok(0o640, 0, 0, 0, 0).is_err());
        assert!(secret_file_ok(0o600, 0, 0, 0, 0).is_ok());
        // another user's file: it could change it at any time
        let err = secret_file_ok(0o600, other, group, relay, group).unwrap_err();
        assert!(
            matches!(
                err,
                TooOpen::Owner {
                    owner: 1001,
                    relay: 1000
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("uid 1001"), "{err}");
    }

    #[test]
    fn new_files_never_follow_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("key.pem");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_new(&link, b"secret", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let err = write_secret_new(&link, b"secret").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        // replacing puts a file where the link was; the target is untouched
        replace_file(&link, b"secret", 0o600).unwrap();
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), b"secret");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        // no temporary file is left behind
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn generated_secrets_left_open_are_closed_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("srs.secret");
        write(&path, 0o644);
        assert_eq!(read_own_secret(&path).unwrap(), b"secret\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn private_dirs_and_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        data_dir(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        let store = data.join("store");
        write(&store, 0o644);
        restrict_own_file(&store).unwrap();
        assert_eq!(mode(&store), 0o600);
        restrict_own_file(&data.join("missing")).unwrap();
    }
}
