//! Files on disk that others must not read: secret files (TLS and DKIM
//! keys, admin keys, SRS and activation secrets) are read only when no user
//! but their owner may read or write them, and the relay's own directories
//! and store are created for its user alone (0700, 0600).
//!
//! Policy: a secret file with a wider mode is refused, not tightened. The
//! file may be shared on purpose (another service, a group), so changing it
//! behind the operator's back could break that service or hide the exposure;
//! refusing names the file and its mode, and the fix is one `chmod 600`.

use std::fs::{DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Permission bits of group and others: none may be set on a secret file.
const OPEN_BITS: u32 = 0o077;

/// A secret file that users other than its owner may read or write.
#[derive(Debug, thiserror::Error)]
#[error(
    "mode {mode:04o} lets users other than its owner read or write it; secret files must be 0600 or 0400 (chmod 600 the file)"
)]
pub struct TooOpen {
    pub mode: u32,
}

/// Reads a secret file, refusing it (`PermissionDenied`, carrying
/// [`TooOpen`]) when group or others have any permission on it. The mode
/// is taken from the opened file, so it is the one of the bytes read.
pub fn read_secret(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & OPEN_BITS != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            TooOpen { mode },
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read_secret`] for a text file.
pub fn read_secret_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read_secret(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file is not UTF-8 text"))
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

/// Makes a file of the relay's own (the store) 0600 if it is wider, and
/// says so: it was made by an older version or by hand.
pub fn restrict_own_file(path: &Path) -> io::Result<()> {
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if mode & OPEN_BITS != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        tracing::warn!(
            path = %path.display(),
            was = %format!("{mode:04o}"),
            "made the file 0600 (other users could read it)"
        );
    }
    Ok(())
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
