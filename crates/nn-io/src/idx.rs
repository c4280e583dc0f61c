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
//! The header is checked before anything else is trusted: the payload must hold exactly
//! `Π dims` bytes (no fewer, no more), and nothing is allocated beyond what the file really
//! contains, so a corrupt or hostile header cannot make the reader reserve gigabytes.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use ndarray::IxDyn;
use nn_core::Tensor;

use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result, io};

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
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let mut file = BufReader::new(std::fs::File::open(path).map_err(io(path))?);
    let mut head = [0u8; 2];
    let got = read_up_to(&mut file, &mut head).map_err(io(path))?;
    let chained = std::io::Cursor::new(head[..got].to_vec()).chain(file);
    if got == 2 && head == [0x1f, 0x8b] {
        parse_idx(flate2::read::GzDecoder::new(chained), path)
    } else {
        parse_idx(chained, path)
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
pub fn parse_idx(mut r: impl Read, path: &Path) -> Result<IdxArray> {
    let read_err = |e: std::io::Error| idx_error(path, format!("cannot decompress or read: {e}"));
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut r, &mut magic).map_err(read_err)?;
    if got < 4 {
        return Err(idx_error(
            path,
            format!("file too short for an IDX header: {got} bytes"),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(idx_error(
            path,
            format!(
                "not an IDX file: magic starts with {:02x} {:02x}, expected 00 00",
                magic[0], magic[1]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(idx_error(
            path,
            format!(
                "element type 0x{:02x} is not supported, expected 0x08 (unsigned byte)",
                magic[2]
            ),
        ));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(idx_error(
            path,
            "an IDX file needs at least one dimension, header says 0".into(),
        ));
    }
    let mut dims_bytes = vec![0u8; 4 * ndim];
    let got = read_up_to(&mut r, &mut dims_bytes).map_err(read_err)?;
    if got < dims_bytes.len() {
        return Err(idx_error(
            path,
            format!("header declares {ndim} dimensions but the file ends inside them"),
        ));
    }
    let dims: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| idx_error(path, format!("dimensions {dims:?} overflow")))?;
    // Read at most one byte past the expected payload: enough to notice extra data, and
    // the buffer grows only with bytes that really arrive.
    // Reserve what the header declares (up to 256 MiB; beyond that the buffer grows with the
    // bytes that really arrive), so a genuine file is read without doubling reallocations.
    let mut data = Vec::with_capacity(expected.min(1 << 28) + 1);
    r.take(expected as u64 + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() < expected {
        return Err(idx_error(
            path,
            format!(
                "dimensions {dims:?} need {expected} bytes of data, the file holds {}",
                data.len()
            ),
        ));
    }
    if data.len() > expected {
        return Err(idx_error(
            path,
            format!("dimensions {dims:?} need {expected} bytes of data, the file holds more"),
        ));
    }
    Ok(IdxArray { dims, data })
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
        // a huge declared size with a tiny payload is reported, not allocated
        let e = parse(&idx_bytes(&[u32::MAX, u32::MAX], &[0; 8])).unwrap_err();
        assert!(e.to_string().contains("the file holds 8"), "{e}");
    }
}
