//! IDX files on disk, gzipped and raw, including the mismatches a loader must refuse.

use std::io::Write;
use std::path::Path;

use nn_io::{Targets, load_idx_dir, load_idx_pair, read_idx};

fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(payload);
    b
}

fn write(path: &Path, bytes: &[u8], gzip: bool) {
    let mut f = std::fs::File::create(path).unwrap();
    if gzip {
        let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap();
    } else {
        f.write_all(bytes).unwrap();
    }
}

#[test]
fn gzipped_and_raw_pairs_load_as_images() {
    let dir = tempfile::tempdir().unwrap();
    // 3 images of 2×2: pixel value = 10·image + position
    let pixels: Vec<u8> = (0..3)
        .flat_map(|i| (0..4).map(move |p| 10 * i + p))
        .collect();
    write(
        &dir.path().join("train-images-idx3-ubyte.gz"),
        &idx_bytes(&[3, 2, 2], &pixels),
        true,
    );
    write(
        &dir.path().join("train-labels-idx1-ubyte"),
        &idx_bytes(&[3], &[4, 0, 9]),
        false,
    );
    let d = load_idx_dir(dir.path(), "train").unwrap();
    assert_eq!(d.x.shape(), &[3, 1, 2, 2]);
    assert_eq!(d.x[[2, 0, 1, 1]], 23.0);
    assert_eq!(d.targets, Targets::Classes(vec![4, 0, 9]));
    assert_eq!(d.num_classes(), Some(10));
}

#[test]
fn counts_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (img, lab) = (dir.path().join("i.gz"), dir.path().join("l"));
    write(&img, &idx_bytes(&[2, 1, 1], &[1, 2]), true);
    write(&lab, &idx_bytes(&[3], &[0, 1, 2]), false);
    let e = load_idx_pair(&img, &lab).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{} holds 2 images but {} holds 3 labels",
            img.display(),
            lab.display()
        )
    );
}

#[test]
fn truncated_gzip_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.gz");
    write(&p, &idx_bytes(&[100], &[7; 100]), true);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_idx(&p).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: ", p.display())), "{e}");
}

#[test]
fn missing_folder_names_the_file_it_looked_for() {
    let e = load_idx_dir(Path::new("/nonexistent/fmnist"), "train")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/fmnist/train-images-idx3-ubyte.gz"),
        "{e}"
    );
}
