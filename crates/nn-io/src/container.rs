//! The file frame around every model and checkpoint payload, and atomic saving.
//!
//! ```text
//! offset  size  field
//!      0     8  magic: "NNMODEL\0" (model) or "NNCKPT\0\0" (checkpoint)
//!      8     4  format version, little-endian u32
//!     12     8  payload length in bytes, little-endian u64
//!     20     4  CRC-32 (IEEE) of the payload, little-endian u32
//!     24     …  payload (see `codec`)
//! ```
//!
//! Reading checks each field before trusting the next: magic, then version, then that the
//! length matches the file's size exactly, then the checksum; only then is the payload
//! decoded. Writing goes to a temporary file in the same folder, which is synced and then
//! renamed over the target, so a crash or a full disk mid-save leaves the old file whole; the
//! next save to the same target removes temporary files a killed process left behind.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::LIMIT;
use crate::error::{Error, Result, io};

/// Size of the fixed header.
pub const HEADER_LEN: usize = 24;

/// The format version this build writes and the newest it reads.
///
/// Version 2 (this build) stores model files as version 1 did; a checkpoint's training
/// history no longer holds confusion matrices. Version-1 files still load: models as they
/// are, checkpoints through the reader of their older training state.
pub const FORMAT_VERSION: u32 = 2;

/// What a file holds, told by its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A trained model.
    Model,
    /// A checkpoint: model plus training state.
    Checkpoint,
}

impl FileKind {
    /// The 8 magic bytes.
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Model => b"NNMODEL\0",
            FileKind::Checkpoint => b"NNCKPT\0\0",
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileKind::Model => "model",
            FileKind::Checkpoint => "checkpoint",
        }
    }
}

/// What the header of a file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The kind (from the magic).
    pub kind: FileKind,
    /// The format version.
    pub version: u32,
    /// Payload length.
    pub payload_len: u64,
    /// The stored CRC-32.
    pub checksum: u32,
}

/// Frames `payload` with a header.
pub fn frame(kind: FileKind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Parses and checks the header: magic, version, length. The checksum is not verified here.
///
/// # Errors
/// [`Error::NotThisFile`], [`Error::NewerVersion`], [`Error::Length`].
pub fn parse_header(bytes: &[u8], expect: FileKind, path: &Path) -> Result<Header> {
    let p = || path.to_path_buf();
    if bytes.len() < 8 || &bytes[..8] != expect.magic() {
        let other = [FileKind::Model, FileKind::Checkpoint]
            .into_iter()
            .find(|k| *k != expect && bytes.len() >= 8 && &bytes[..8] == k.magic());
        return Err(Error::NotThisFile {
            path: p(),
            expected: expect.name(),
            found: match other {
                Some(k) => format!("a {} file", k.name()),
                None => format!("magic bytes {:02x?}", &bytes[..bytes.len().min(8)]),
            },
        });
    }
    if bytes.len() < HEADER_LEN {
        return Err(Error::Length {
            path: p(),
            message: format!(
                "file ends inside the {HEADER_LEN}-byte header ({} bytes)",
                bytes.len()
            ),
        });
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let version = u32_at(8);
    if version > FORMAT_VERSION || version == 0 {
        return Err(Error::NewerVersion {
            path: p(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let payload_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let actual = (bytes.len() - HEADER_LEN) as u64;
    if payload_len != actual {
        return Err(Error::Length {
            path: p(),
            message: format!(
                "header declares a {payload_len}-byte payload, the file holds {actual} bytes after the header{}",
                if payload_len > actual {
                    " (truncated?)"
                } else {
                    ""
                }
            ),
        });
    }
    Ok(Header {
        kind: expect,
        version,
        payload_len,
        checksum: u32_at(20),
    })
}

/// Checks the header and the checksum; returns the header and the payload.
///
/// # Errors
/// As [`parse_header`]; [`Error::Checksum`] when the payload's CRC-32 differs.
pub fn unframe<'a>(bytes: &'a [u8], expect: FileKind, path: &Path) -> Result<(Header, &'a [u8])> {
    let header = parse_header(bytes, expect, path)?;
    let payload = &bytes[HEADER_LEN..];
    let computed = crc32fast::hash(payload);
    if computed != header.checksum {
        return Err(Error::Checksum {
            path: path.to_path_buf(),
            stored: header.checksum,
            computed,
        });
    }
    Ok((header, payload))
}

/// Reads a whole file, refusing files larger than a header plus the payload limit before
/// reading them.
///
/// # Errors
/// [`Error::Io`]; [`Error::Length`] for an oversized file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let max = (HEADER_LEN + LIMIT) as u64;
    if size > max {
        return Err(Error::Length {
            path: path.to_path_buf(),
            message: format!("file is {size} bytes, larger than the {max}-byte limit"),
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    Ok(bytes)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file atomically: `write` fills a temporary file in the same folder, which is
/// synced to disk and renamed over `path`. If anything fails, the temporary file is removed
/// and `path` keeps its old contents.
///
/// # Errors
/// [`Error::Save`] naming `path` and the failure.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    remove_stale_temporaries(&dir, &name);
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let save_err = |source: std::io::Error| Error::Save {
        path: path.to_path_buf(),
        source,
    };
    let result = (|| -> std::io::Result<()> {
        {
            // closed at the end of this block, before the rename
            let mut f = File::create(&tmp)?;
            let mut w = std::io::BufWriter::new(&mut f);
            write(&mut w)?;
            w.flush()?;
            drop(w);
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        // make the rename itself durable (best effort: not every platform syncs folders)
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(save_err(e));
    }
    Ok(())
}

/// Removes the temporary files of saves to `dir/name` that a killed process left behind:
/// `.{name}.tmp-{pid}-{n}` whose process no longer runs (on Linux, `/proc/{pid}` is gone;
/// elsewhere, files older than a day). Failures are ignored: this is tidying, not saving.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !running(pid, &entry)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether the process that wrote a temporary file may still be writing it.
fn running(pid: u32, entry: &std::fs::DirEntry) -> bool {
    if cfg!(target_os = "linux") {
        return Path::new(&format!("/proc/{pid}")).exists();
    }
    let age = entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    age.is_none_or(|a| a.as_secs() < 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let f = frame(FileKind::Model, b"abc");
        assert_eq!(&f[..8], b"NNMODEL\0");
        assert_eq!(
            u32::from_le_bytes(f[8..12].try_into().unwrap()),
            FORMAT_VERSION
        );
        assert_eq!(u64::from_le_bytes(f[12..20].try_into().unwrap()), 3);
        // CRC-32/IEEE of "abc" is 0x352441c2
        assert_eq!(
            u32::from_le_bytes(f[20..24].try_into().unwrap()),
            0x3524_41c2
        );
        let (h, p) = unframe(&f, FileKind::Model, Path::new("m")).unwrap();
        assert_eq!((h.payload_len, p), (3, &b"abc"[..]));
    }

    #[test]
    fn each_check_has_its_error() {
        let p = Path::new("m.nnm");
        let good = frame(FileKind::Model, b"payload");
        let e = unframe(&good, FileKind::Checkpoint, p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.nnm: not a checkpoint file: found a model file"
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(
            unframe(&bad, FileKind::Model, p)
                .unwrap_err()
                .to_string()
                .starts_with("m.nnm: not a model file: found magic bytes")
        );
        let mut newer = good.clone();
        newer[8] = 3;
        assert_eq!(
            unframe(&newer, FileKind::Model, p).unwrap_err().to_string(),
            "m.nnm: format version 3 is not supported; this build reads versions 1 to 2"
        );
        let e = unframe(&good[..good.len() - 1], FileKind::Model, p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.nnm: header declares a 7-byte payload, the file holds 6 bytes after the header (truncated?)"
        );
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(
            unframe(&flipped, FileKind::Model, p)
                .unwrap_err()
                .to_string()
                .starts_with("m.nnm: checksum mismatch")
        );
        assert!(
            unframe(&good[..10], FileKind::Model, p)
                .unwrap_err()
                .to_string()
                .contains("inside the 24-byte header")
        );
    }
}
