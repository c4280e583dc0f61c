//! Mini-batches gathered into reused buffers.
//!
//! Each epoch draws a fresh permutation of the rows; batch `b` holds rows
//! `perm[b·B .. min((b+1)·B, N)]`, so the last batch keeps the remainder. Rows are copied
//! into one buffer per epoch's lifetime — never a copy of the whole data set.

use ndarray::{ArrayViewD, Axis};
use nn_core::Buffer;
use nn_core::parallel::split_runs;
use nn_layers::Target;

use crate::error::{Error, Result};

/// Inputs and their targets, rows first.
#[derive(Clone, Debug)]
pub struct Data<'a> {
    /// Inputs `[n, …]`.
    pub x: ArrayViewD<'a, f32>,
    /// Targets: `n` class indices, or real values `[n, …]`.
    pub target: Target<'a>,
}

impl<'a> Data<'a> {
    /// Pairs inputs with targets, checking that both have the same number of rows.
    ///
    /// # Errors
    /// [`Error::Data`] naming both row counts.
    pub fn new(x: ArrayViewD<'a, f32>, target: Target<'a>) -> Result<Self> {
        if x.ndim() == 0 {
            return Err(Error::Data("inputs need a batch axis, got a scalar".into()));
        }
        let rows = match &target {
            Target::Classes(c) => c.len(),
            Target::Values(t) => t.shape().first().copied().unwrap_or(0),
        };
        if rows != x.shape()[0] {
            return Err(Error::Data(format!(
                "{} input rows but {rows} target rows",
                x.shape()[0]
            )));
        }
        Ok(Data { x, target })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.x.shape()[0]
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `start..end` as views (no copy).
    pub fn slice(&self, start: usize, end: usize) -> Data<'_> {
        let x = self.x.slice_axis(Axis(0), (start..end).into());
        let target = match &self.target {
            Target::Classes(c) => Target::Classes(&c[start..end]),
            Target::Values(t) => Target::Values(t.slice_axis(Axis(0), (start..end).into())),
        };
        Data { x, target }
    }
}

/// Reused storage for one gathered mini-batch.
#[derive(Debug, Default)]
pub struct BatchBuffer {
    x: Buffer,
    classes: Vec<usize>,
    values: Buffer,
}

impl BatchBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies rows `idx` of `data` into the buffer and returns them as a batch.
    pub fn gather<'s>(&'s mut self, data: &Data<'_>, idx: &[usize]) -> Data<'s> {
        gather_rows(&mut self.x, data.x.view(), idx);
        let target = match &data.target {
            Target::Classes(c) => {
                self.classes.clear();
                self.classes.extend(idx.iter().map(|&i| c[i]));
                Target::Classes(&self.classes)
            }
            Target::Values(t) => {
                gather_rows(&mut self.values, t.view(), idx);
                Target::Values(self.values.view())
            }
        };
        Data {
            x: self.x.view(),
            target,
        }
    }
}

/// Copies rows `idx` of `src` (`[n, …]`) into `dst` (`[idx.len(), …]`).
fn gather_rows(dst: &mut Buffer, src: ArrayViewD<'_, f32>, idx: &[usize]) {
    let row: usize = src.shape()[1..].iter().product();
    dst.resize_rows(idx.len(), &src.shape()[1..]); // [batch, row shape…]
    match src.as_slice() {
        // rows scattered over a large data set: each read waits on memory, so a large
        // batch is gathered by all threads
        Some(s) if row > 0 => split_runs(
            idx.len(),
            (dst.as_mut_slice(), row),
            idx.len() * row,
            &|r, d| {
                for (d, &i) in d.chunks_exact_mut(row).zip(&idx[r]) {
                    d.copy_from_slice(&s[i * row..(i + 1) * row]);
                }
            },
        ),
        Some(_) => {}
        None => {
            let mut out = dst.view_mut();
            for (k, &i) in idx.iter().enumerate() {
                out.index_axis_mut(Axis(0), k)
                    .assign(&src.index_axis(Axis(0), i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn gathers_rows_and_targets() {
        let x = array![[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]].into_dyn();
        let c = [7usize, 8, 9];
        let d = Data::new(x.view(), Target::Classes(&c)).unwrap();
        let mut b = BatchBuffer::new();
        let g = b.gather(&d, &[2, 0]);
        assert_eq!(g.x, array![[4.0f32, 5.0], [0.0, 1.0]].into_dyn());
        assert!(matches!(g.target, Target::Classes(&[9, 7])));
        // a non-contiguous source takes the slow path and gives the same rows
        let xt = array![[0.0f32, 2.0, 4.0], [1.0, 3.0, 5.0]].into_dyn();
        let xt = xt.t();
        let v = array![[1.0f32], [2.0], [3.0]].into_dyn();
        let d = Data::new(xt.view(), Target::Values(v.view())).unwrap();
        let g = b.gather(&d, &[1]);
        assert_eq!(g.x, array![[2.0f32, 3.0]].into_dyn());
        match g.target {
            Target::Values(t) => assert_eq!(t, array![[2.0f32]].into_dyn()),
            Target::Classes(_) => panic!("values expected"),
        }
    }

    #[test]
    fn row_counts_must_agree() {
        let x = ndarray::Array2::<f32>::zeros((3, 2)).into_dyn();
        let e = Data::new(x.view(), Target::Classes(&[0, 1])).unwrap_err();
        assert_eq!(e.to_string(), "data: 3 input rows but 2 target rows");
    }

    #[test]
    fn large_batches_gather_every_row_in_order() {
        // 500 rows of 3: row i holds [3i, 3i + 1, 3i + 2]; a batch of 300 rows is split
        // across threads
        let x = ndarray::Array2::from_shape_fn((500, 3), |(i, j)| (3 * i + j) as f32).into_dyn();
        let c: Vec<usize> = (0..500).collect();
        let d = Data::new(x.view(), Target::Classes(&c)).unwrap();
        assert!(!d.is_empty());
        let idx: Vec<usize> = (0..300).map(|k| (k * 7 + 3) % 500).collect();
        let mut b = BatchBuffer::new();
        let g = b.gather(&d, &idx);
        for (k, &i) in idx.iter().enumerate() {
            let want = [3 * i, 3 * i + 1, 3 * i + 2].map(|v| v as f32);
            assert_eq!(g.x.index_axis(Axis(0), k).as_slice().unwrap(), want);
        }
        assert!(matches!(g.target, Target::Classes(t) if t == idx.as_slice()));
        // rows of no values gather to an empty batch of the right shape
        let empty = ndarray::Array2::<f32>::zeros((4, 0)).into_dyn();
        let d = Data::new(empty.view(), Target::Classes(&c[..4])).unwrap();
        assert_eq!(b.gather(&d, &[3, 1]).x.shape(), [2, 0]);
        let none = ndarray::Array2::<f32>::zeros((0, 2)).into_dyn();
        assert!(
            Data::new(none.view(), Target::Classes(&[]))
                .unwrap()
                .is_empty()
        );
    }
}
