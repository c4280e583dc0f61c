//! IDX files, the format of MNIST and Fashion-MNIST, raw or gzipped.
//!
//! ```text
//! bytes 0–1   0x00 0x00
//! byte  2     element type (0x08 = unsigned byte, the only one these data sets use)
//! byte  3     number of dimensions d
//! 4·d bytes   each dimension, big-endian u32
//! then        Π dims elements, row-major
//! ```
//!
//! The header is checked before anything else is trusted: `Π dims` (checked arithmetic) must
//! be within [`MAX_IDX_BYTES`] before a single data byte is read or decompressed, and the
//! payload must then hold exactly that many bytes (no fewer, no more). The reader reserves
//! no more than the file can hold (its size, or for a gzipped file the most that size can
//! decompress to), so a corrupt or hostile header cannot make it reserve gigabytes, and a
//! small gzip file that decompresses to more than its header declares is cut off there.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::IxDyn;
use nn_core::Tensor;

use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result, io};
use crate::limits::MAX_IDX_BYTES;

/// The most bytes deflate can expand one byte of compressed data to.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The class names of Fashion-MNIST, by label index.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The dimensions and bytes of an IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// `Π dims` bytes, row-major.
    pub data: Vec<u8>,
}

fn idx_error(path: &Path, message: String) -> Error {
    Error::Idx {
        path: path.to_path_buf(),
        message,
    }
}

/// Reads an IDX file of unsigned bytes, gzipped (detected by its magic) or raw.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Idx`] for a bad magic, an element
/// type other than unsigned bytes, or a payload shorter or longer than the dimensions say.
///
/// # Example
///
/// An IDX file is a magic (`0, 0`, the element type `0x08` for unsigned bytes, the number of
/// dimensions), each dimension as a big-endian `u32`, then the values:
///
/// ```
/// use nn_io::read_idx;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("images-idx3-ubyte");
/// let mut bytes = vec![0, 0, 0x08, 3]; // unsigned bytes, 3 dimensions
/// for d in [2u32, 2, 3] {
///     bytes.extend(d.to_be_bytes()); // 2 images of 2×3 pixels
/// }
/// bytes.extend(0..12u8);
/// std::fs::write(&path, &bytes)?;
/// let images = read_idx(&path)?;
/// assert_eq!((images.dims.as_slice(), images.data[11]), (&[2, 2, 3][..], 11));
///
/// bytes.pop(); // one pixel short of what the dimensions promise
/// std::fs::write(&path, &bytes)?;
/// assert!(read_idx(&path).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let mut file = BufReader::new(file);
    let mut head = [0u8; 2];
    let got = read_up_to(&mut file, &mut head).map_err(io(path))?;
    let chained = std::io::Cursor::new(head[..got].to_vec()).chain(file);
    if got == 2 && head == [0x1f, 0x8b] {
        let most = size.saturating_mul(MAX_DEFLATE_RATIO);
        parse_idx_within(flate2::read::GzDecoder::new(chained), path, most)
    } else {
        parse_idx_within(chained, path, size)
    }
}

/// Fills `buf` as far as the reader allows; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Parses IDX bytes from any reader; `path` names the source in messages.
///
/// # Errors
/// As [`read_idx`].
pub fn parse_idx(r: impl Read, path: &Path) -> Result<IdxArray> {
    // a reader of unknown length: reserve 1 MiB at most, grow with the bytes that arrive
    parse_idx_within(r, path, 1 << 20)
}

/// As [`parse_idx`] for a source that can yield at most `most` bytes (what the reader
/// reserves is bounded by it).
fn parse_idx_within(mut r: impl Read, path: &Path, most: u64) -> Result<IdxArray> {
    let dims = read_header(&mut r, path)?;
    let expected = nn_core::limits::product(&dims).unwrap_or(usize::MAX);
    if expected > MAX_IDX_BYTES {
        return Err(Error::Limit {
            path: path.to_path_buf(),
            message: format!(
                "dimensions {dims:?} declare {expected} bytes of data, more than the limit of {MAX_IDX_BYTES}"
            ),
        });
    }
    // Read at most one byte past the declared payload: enough to notice extra data. Reserve
    // what the header declares, but never more than the source can really hold.
    let reserve = (expected as u64).min(most).saturating_add(1);
    let mut data = Vec::with_capacity(usize::try_from(reserve).unwrap_or(expected));
    r.take(expected as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_error(path, e))?;
    if data.len() != expected {
        let holds = if data.len() > expected {
            "more".to_string()
        } else {
            data.len().to_string()
        };
        return Err(idx_error(
            path,
            format!("dimensions {dims:?} need {expected} bytes of data, the file holds {holds}"),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// The header: magic `00 00 08 n` (unsigned bytes, `n` dimensions), then `n` big-endian
/// 32-bit sizes.
fn read_header(r: &mut impl Read, path: &Path) -> Result<Vec<usize>> {
    let mut magic = [0u8; 4];
    let got = read_up_to(r, &mut magic).map_err(|e| read_error(path, e))?;
    let problem = match magic {
        _ if got < 4 => format!("file too short for an IDX header: {got} bytes"),
        [a, b, ..] if a != 0 || b != 0 => {
            format!("not an IDX file: magic starts with {a:02x} {b:02x}, expected 00 00")
        }
        [_, _, t, _] if t != 0x08 => {
            format!("element type 0x{t:02x} is not supported, expected 0x08 (unsigned byte)")
        }
        [.., 0] => "an IDX file needs at least one dimension, header says 0".into(),
        _ => String::new(),
    };
    if !problem.is_empty() {
        return Err(idx_error(path, problem));
    }
    let ndim = magic[3] as usize;
    let mut dims_bytes = vec![0u8; 4 * ndim];
    let got = read_up_to(r, &mut dims_bytes).map_err(|e| read_error(path, e))?;
    if got < dims_bytes.len() {
        return Err(idx_error(
            path,
            format!("header declares {ndim} dimensions but the file ends inside them"),
        ));
    }
    Ok(dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect())
}

fn read_error(path: &Path, e: std::io::Error) -> Error {
    idx_error(path, format!("cannot decompress or read: {e}"))
}

/// Reads an images file (`[n, h, w]`) and a labels file (`[n]`) into a data set of
/// `[n, 1, h, w]` images with raw pixel values 0–255 as f32, and class targets.
///
/// # Errors
/// As [`read_idx`]; [`Error::Mismatch`] when the files' counts differ or their shapes are
/// not images and labels.
pub fn load_idx_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    let img = read_idx(images)?;
    let lab = read_idx(labels)?;
    if img.dims.len() != 3 {
        return Err(idx_error(
            images,
            format!("expected images [n, h, w], got dimensions {:?}", img.dims),
        ));
    }
    if lab.dims.len() != 1 {
        return Err(idx_error(
            labels,
            format!("expected labels [n], got dimensions {:?}", lab.dims),
        ));
    }
    if img.dims[0] != lab.dims[0] {
        return Err(Error::Mismatch {
            message: format!(
                "{} holds {} images but {} holds {} labels",
                images.display(),
                img.dims[0],
                labels.display(),
                lab.dims[0]
            ),
        });
    }
    let (n, h, w) = (img.dims[0], img.dims[1], img.dims[2]);
    let x: Vec<f32> = img.data.iter().map(|&b| b as f32).collect();
    drop(img.data);
    let x = Tensor::from_shape_vec(IxDyn(&[n, 1, h, w]), x).expect("size checked");
    let classes = lab.data.iter().map(|&b| b as usize).collect();
    Dataset::new(x, Targets::Classes(classes))
}

/// The images and labels files of one part (`"train"` or `"t10k"`) in an MNIST-style folder,
/// gzipped or not: `<part>-images-idx3-ubyte[.gz]` and `<part>-labels-idx1-ubyte[.gz]`.
///
/// # Errors
/// [`Error::Io`] (not found) naming the gzipped path when neither form exists.
pub fn find_idx_pair(dir: &Path, part: &str) -> Result<(PathBuf, PathBuf)> {
    let find = |stem: String| -> Result<PathBuf> {
        let gz = dir.join(format!("{stem}.gz"));
        let raw = dir.join(&stem);
        if gz.is_file() {
            Ok(gz)
        } else if raw.is_file() {
            Ok(raw)
        } else {
            Err(Error::Io {
                path: gz,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file (nor without .gz)",
                ),
            })
        }
    };
    Ok((
        find(format!("{part}-images-idx3-ubyte"))?,
        find(format!("{part}-labels-idx1-ubyte"))?,
    ))
}

/// Loads one part (`"train"` or `"t10k"`) of an MNIST-style folder.
///
/// # Errors
/// As [`find_idx_pair`] and [`load_idx_pair`].
pub fn load_idx_dir(dir: &Path, part: &str) -> Result<Dataset> {
    let (images, labels) = find_idx_pair(dir, part)?;
    load_idx_pair(&images, &labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IDX file of unsigned bytes with the given dimensions and payload.
    pub(crate) fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(payload);
        b
    }

    fn parse(bytes: &[u8]) -> Result<IdxArray> {
        parse_idx(bytes, Path::new("x.idx"))
    }

    #[test]
    fn parses_a_small_file() {
        let a = parse(&idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn header_and_size_errors() {
        let e = parse(&idx_bytes(&[2, 3], &[1, 2, 3])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.idx: dimensions [2, 3] need 6 bytes of data, the file holds 3"
        );
        let e = parse(&idx_bytes(&[2], &[1, 2, 3])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.idx: dimensions [2] need 2 bytes of data, the file holds more"
        );
        let e = parse(&[1, 2, 8, 1, 0, 0, 0, 1, 7]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.idx: not an IDX file: magic starts with 01 02, expected 00 00"
        );
        let e = parse(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 7]).unwrap_err();
        assert!(
            e.to_string().contains("element type 0x0d is not supported"),
            "{e}"
        );
        let e = parse(&[0, 0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.idx: file too short for an IDX header: 2 bytes"
        );
        // a huge declared size is refused before any data is read
        let e = parse(&idx_bytes(&[u32::MAX, u32::MAX], &[0; 8])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.idx: dimensions [4294967295, 4294967295] declare 18446744065119617025 bytes of data, more than the limit of 268435456"
        );
        let e = parse(&idx_bytes(&[1 << 14, 1 << 14], &[0; 8])).unwrap_err();
        assert!(e.to_string().contains("the file holds 8"), "{e}");
    }
}
