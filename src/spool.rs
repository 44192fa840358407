//! The spool (layer 2): one file per queued message body, named by queue
//! id, written and fsynced before the store commit that references it.
//! Damaged entries are moved to `quarantine/`, never deleted. A message
//! still arriving is streamed to a private file under `incoming/` (removed
//! when dropped), so no body is ever held whole in memory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The spool directory and its quarantine.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    quarantine: PathBuf,
    incoming: PathBuf,
}

/// A message to spool: the header block (ours and the message's, up to and
/// including the empty line) and the body.
#[derive(Debug)]
pub struct Message {
    pub head: Vec<u8>,
    pub body: Body,
}

/// Where a message body is: small ones in memory, large ones in the file
/// they were streamed to while arriving.
#[derive(Debug)]
pub enum Body {
    Memory(Vec<u8>),
    File(IncomingFile),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::File(file) => file.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A second handle on the file of a body held in a file (None for a
    /// body in memory), for a reader that must outlive the borrow of the
    /// body (a scan streaming it). The handle shares the file position:
    /// read it with `FileExt::read_at` only.
    pub(crate) fn file_handle(&self) -> Option<std::io::Result<File>> {
        match self {
            Body::Memory(_) => None,
            Body::File(file) => Some(file.file.try_clone()),
        }
    }

    /// Calls `each` with the body in chunks of at most [`CHUNK`] bytes, in
    /// order (blocking: file reads).
    pub fn for_each_chunk(&self, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
        match self {
            Body::Memory(bytes) => {
                bytes.chunks(CHUNK).for_each(each);
                Ok(())
            }
            Body::File(file) => {
                let mut reader = File::open(&file.path)?;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = reader.read(&mut buf)?;
                    let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
                        return Ok(());
                    };
                    each(chunk);
                }
            }
        }
    }
}

impl From<Vec<u8>> for Message {
    /// A whole message as one block (DSNs, tests).
    fn from(message: Vec<u8>) -> Message {
        Message {
            head: Vec::new(),
            body: Body::Memory(message),
        }
    }
}

/// Bytes read or written at a time when a body is streamed.
pub(crate) const CHUNK: usize = 64 * 1024;

/// A body being received: a private file in `incoming/`, removed when this
/// is dropped (the message was refused, the client went away, or it has
/// been copied into the spool).
#[derive(Debug)]
pub struct IncomingFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl IncomingFile {
    /// Appends `bytes` (blocking).
    pub(crate) fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.len = self.len.saturating_add(bytes.len() as u64);
        Ok(())
    }
}

impl Drop for IncomingFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Spool {
    /// Opens (creating) `dir` and `dir/../quarantine`.
    /// Also opens `dir/../incoming`, emptied: what is there was being
    /// received when the relay stopped, and was never acknowledged.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        // Private (0700): message bodies are other people's mail.
        crate::files::create_private_dir(dir)?;
        let parent = dir.parent().unwrap_or(dir);
        let quarantine = parent.join("quarantine");
        crate::files::create_private_dir(&quarantine)?;
        let incoming = parent.join("incoming");
        crate::files::create_private_dir(&incoming)?;
        for entry in std::fs::read_dir(&incoming)? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            quarantine,
            incoming,
        })
    }

    /// A new private file for a body being received (blocking).
    pub(crate) fn incoming(&self) -> std::io::Result<IncomingFile> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = self
                .incoming
                .join(format!("{}-{n}.part", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => return Ok(IncomingFile { file, path, len: 0 }),
                // Left by an earlier process with the same pid: next name.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a message as spool file `id`: the head, then the body (copied
    /// from its incoming file in the kernel, never through memory), and
    /// fsyncs it. A failed write leaves no partial file behind.
    pub(crate) fn write_message(&self, id: u64, message: &Message) -> std::io::Result<()> {
        let path = self.path(id);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let written = (|| {
            file.write_all(&message.head)?;
            match &message.body {
                Body::Memory(bytes) => file.write_all(bytes)?,
                Body::File(incoming) => {
                    let mut source = &incoming.file;
                    source.rewind()?;
                    let copied = std::io::copy(&mut source, &mut file)?;
                    if copied != incoming.len {
                        return Err(std::io::Error::other(format!(
                            "incoming body changed size: {copied} bytes, expected {}",
                            incoming.len
                        )));
                    }
                }
            }
            file.sync_data()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        written
    }

    pub(crate) fn path(&self, id: u64) -> PathBuf {
        self.dir.join(crate::store::format_queue_id(id))
    }

    #[cfg(test)]
    pub(crate) fn quarantine_dir(&self) -> &Path {
        &self.quarantine
    }

    /// Writes the message and fsyncs the file (not the directory: see
    /// [`Spool::sync_dir`], done once per group commit).
    /// A failed write removes its partial file (the file is new: an id is
    /// never reused, so nothing else is lost).
    pub(crate) fn write(&self, id: u64, message: &[u8]) -> std::io::Result<()> {
        write_new(&self.path(id), |file| file.write_all(message))
    }

    /// Makes new directory entries durable.
    pub(crate) fn sync_dir(&self) -> std::io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    pub(crate) fn read(&self, id: u64) -> std::io::Result<Vec<u8>> {
        let mut file = File::open(self.path(id))?;
        let mut buf = Vec::with_capacity(file.metadata().map(|m| m.len() as usize).unwrap_or(0));
        file.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Deletes a body whose queue entry is gone (delivered, dropped).
    pub(crate) fn remove(&self, id: u64) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Moves a body (if any) and the raw metadata into quarantine.
    pub(crate) fn quarantine(&self, id: u64, metadata: &[u8], reason: &str) -> std::io::Result<()> {
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
    pub(crate) fn list(&self) -> std::io::Result<(Vec<u64>, Vec<PathBuf>)> {
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

/// Creates `path` (0600, must not exist), fills it with `fill` and syncs
/// it; on any failure after creation the partial file is removed.
fn write_new(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = fill(&mut file).and_then(|()| file.sync_data());
    if written.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        let failed = write_new(&path, |f| {
            f.write_all(b"half a message")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert!(!path.exists(), "the partial file is removed");
        // An existing file (another message) is never touched.
        std::fs::write(&path, b"other").unwrap();
        assert!(write_new(&path, |f| f.write_all(b"x")).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"other");
    }

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
