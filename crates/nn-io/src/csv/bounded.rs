//! [`Bounded`]: a reader that stops at the input and line limits.
//!
//! `/dev/zero`, an endless pipe or a file without newlines would otherwise be read into
//! memory until it runs out. The reader counts every byte and the bytes since the last
//! newline, and fails with an error naming the limit (and the variable that raises it) as
//! soon as either count passes its bound.

use std::io::Read;
use std::path::Path;

use crate::error::Error;
use crate::limits::Limits;

/// A reader that fails once more than `limits.input_bytes` bytes, or a line of more than
/// `limits.line_bytes` bytes, have come through.
#[derive(Debug)]
pub struct Bounded<R> {
    inner: R,
    limits: Limits,
    total: u64,
    line: usize,
    lines: u64,
}

/// The error a [`Bounded`] reader returns, carried inside an `io::Error`.
#[derive(Debug)]
struct LimitHit(String);

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitHit {}

impl<R: Read> Bounded<R> {
    /// Wraps `inner` with `limits`.
    pub fn new(inner: R, limits: &Limits) -> Self {
        Bounded {
            inner,
            limits: *limits,
            total: 0,
            line: 0,
            lines: 1,
        }
    }

    fn hit(&self, message: String) -> std::io::Error {
        std::io::Error::other(LimitHit(message))
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // never ask for more than one byte past the input limit
        let room = self.limits.input_bytes.saturating_sub(self.total) + 1;
        let take = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..take])?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.line = 0;
                self.lines += 1;
            } else {
                self.line += 1;
                if self.line > self.limits.line_bytes {
                    return Err(self.hit(format!(
                        "line {} is longer than the limit of {} bytes (set NN_MAX_LINE_BYTES to raise it)",
                        self.lines, self.limits.line_bytes
                    )));
                }
            }
        }
        self.total += n as u64;
        if self.total > self.limits.input_bytes {
            return Err(self.hit(format!(
                "more than the limit of {} bytes (set NN_MAX_INPUT_BYTES to raise it)",
                self.limits.input_bytes
            )));
        }
        Ok(n)
    }
}

/// An I/O error of a CSV source as ours: [`Error::Limit`] when a bound was hit.
pub(super) fn io_error(path: &Path, source: std::io::Error) -> Error {
    match source.get_ref().and_then(|e| e.downcast_ref::<LimitHit>()) {
        Some(hit) => Error::Limit {
            path: path.to_path_buf(),
            message: hit.0.clone(),
        },
        None => Error::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The error for a file larger than the input limit, found before reading it.
pub(super) fn too_large(path: &Path, size: u64, limit: u64) -> Error {
    Error::Limit {
        path: path.to_path_buf(),
        message: format!(
            "the file has {size} bytes, more than the limit of {limit} (set NN_MAX_INPUT_BYTES to raise it)"
        ),
    }
}
