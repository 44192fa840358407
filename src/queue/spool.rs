//! The spool: one file per queued message body, named by queue id, written
//! and fsynced before the store commit that references it. Damaged entries
//! are moved to `quarantine/`, never deleted.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The spool directory and its quarantine.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    quarantine: PathBuf,
}

impl Spool {
    /// Opens (creating) `dir` and `dir/../quarantine`.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        // Private (0700): message bodies are other people's mail.
        crate::files::create_private_dir(dir)?;
        let quarantine = dir.parent().unwrap_or(dir).join("quarantine");
        crate::files::create_private_dir(&quarantine)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            quarantine,
        })
    }

    pub fn path(&self, id: u64) -> PathBuf {
        self.dir.join(crate::store::format_queue_id(id))
    }

    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine
    }

    /// Writes the message and fsyncs the file (not the directory: see
    /// [`Spool::sync_dir`], done once per group commit).
    pub fn write(&self, id: u64, message: &[u8]) -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.path(id))?;
        file.write_all(message)?;
        file.sync_data()
    }

    /// Makes new directory entries durable.
    pub fn sync_dir(&self) -> std::io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    pub fn read(&self, id: u64) -> std::io::Result<Vec<u8>> {
        let mut file = File::open(self.path(id))?;
        let mut buf = Vec::with_capacity(file.metadata().map(|m| m.len() as usize).unwrap_or(0));
        file.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Deletes a body whose queue entry is gone (delivered, dropped).
    pub fn remove(&self, id: u64) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Moves a body (if any) and the raw metadata into quarantine.
    pub fn quarantine(&self, id: u64, metadata: &[u8], reason: &str) -> std::io::Result<()> {
        let name = crate::store::format_queue_id(id);
        let body = self.path(id);
        if body.exists() {
            std::fs::rename(&body, self.quarantine.join(format!("{name}.eml")))?;
        }
        let mut meta = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.quarantine.join(format!("{name}.meta")))?;
        writeln!(meta, "# quarantined: {reason}")?;
        meta.write_all(metadata)?;
        meta.sync_all()?;
        File::open(&self.quarantine)?.sync_all()
    }

    /// Ids of every spool file; names that are not queue ids are returned
    /// separately (they are left alone and reported).
    pub fn list(&self) -> std::io::Result<(Vec<u64>, Vec<PathBuf>)> {
        let mut ids = Vec::new();
        let mut strange = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            match name.to_str().and_then(crate::store::parse_queue_id) {
                Some(id) => ids.push(id),
                None => strange.push(entry.path()),
            }
        }
        Ok((ids, strange))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_remove_and_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        spool.write(42, b"hello").unwrap();
        spool.sync_dir().unwrap();
        assert!(spool.write(42, b"again").is_err(), "ids are never reused");
        assert_eq!(spool.read(42).unwrap(), b"hello");
        assert_eq!(spool.list().unwrap().0, vec![42]);
        spool.quarantine(42, b"{}", "test").unwrap();
        assert!(spool.read(42).is_err());
        let q = spool
            .quarantine_dir()
            .join(format!("{}.eml", crate::store::format_queue_id(42)));
        assert_eq!(std::fs::read(q).unwrap(), b"hello");
        spool.write(43, b"x").unwrap();
        spool.remove(43).unwrap();
        spool.remove(43).unwrap();
        assert!(spool.list().unwrap().0.is_empty());
    }
}
