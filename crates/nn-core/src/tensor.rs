//! The tensor type and a reusable buffer.
//!
//! A [`Tensor`] is an `ndarray` array of `f32` with a dynamic number of axes, batch first:
//! a batch of feature rows is `[n, features]`, a batch of images `[n, c, h, w]`.
//!
//! Layers write their outputs into a [`Buffer`] that keeps its allocation from one batch to
//! the next, so that steady-state training allocates nothing; a smaller last batch reuses
//! the same memory.

use ndarray::{ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, ArrayViewMutD, Ix2, IxDyn};

use crate::error::{Error, Result};

/// An `f32` tensor, batch first.
pub type Tensor = ArrayD<f32>;

/// A growable, reusable tensor storage: the shape changes, the allocation stays.
///
/// `Buffer` is how layers hold their outputs and caches. [`Buffer::resize`] sets a new shape
/// and only allocates when the new shape needs more elements than ever held before.
///
/// # Example
///
/// ```
/// use nn_core::Buffer;
///
/// let mut y = Buffer::new();
/// y.resize(&[64, 10]); // a batch of 64 rows: allocates 640 values
/// let bytes = y.capacity_bytes();
/// y.as_mut_slice().fill(1.0);
/// y.resize(&[32, 10]); // the last, smaller batch: no allocation, the shape changes
/// assert_eq!((y.shape(), y.len(), y.capacity_bytes()), (&[32, 10][..], 320, bytes));
/// assert_eq!(y.view2().row(31).sum(), 10.0);
/// ```
#[derive(Clone, Debug)]
pub struct Buffer {
    data: Vec<f32>,
    shape: Vec<usize>,
}

impl Default for Buffer {
    /// As [`Buffer::new`]: shape `[0]` (a derived default would have shape `[]`, one element
    /// with no storage behind it).
    fn default() -> Self {
        Self::new()
    }
}

impl Buffer {
    /// An empty buffer of shape `[0]`.
    pub fn new() -> Self {
        Buffer {
            data: Vec::new(),
            shape: vec![0],
        }
    }

    /// The current shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements in the current shape.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the current shape holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the shape (as [`Buffer::resize`]) and returns the entries to overwrite, row-major.
    pub fn resized(&mut self, shape: &[usize]) -> &mut [f32] {
        self.resize(shape);
        self.as_mut_slice()
    }

    /// Sets the shape, keeping the allocation. Element values are unspecified afterwards
    /// (whatever the previous use left) — callers overwrite them.
    pub fn resize(&mut self, shape: &[usize]) {
        let n: usize = shape.iter().product();
        if self.data.len() < n {
            self.data.resize(n, 0.0);
        }
        self.shape.clear();
        self.shape.extend_from_slice(shape);
    }

    /// Sets the shape to `[rows, rest…]`, keeping the allocation (no temporary shape vector).
    pub fn resize_rows(&mut self, rows: usize, rest: &[usize]) {
        self.shape.clear();
        self.shape.push(rows);
        self.shape.extend_from_slice(rest);
        let n = self.len();
        if self.data.len() < n {
            self.data.resize(n, 0.0);
        }
    }

    /// Sets the shape and fills every element with `value`.
    pub fn resize_filled(&mut self, shape: &[usize], value: f32) {
        self.resize(shape);
        let n = self.len();
        self.data[..n].fill(value);
    }

    /// Copies `x` (shape and values) into the buffer.
    pub fn assign(&mut self, x: ArrayViewD<'_, f32>) {
        self.resize(x.shape());
        let n = self.len();
        match x.as_slice() {
            // a large copy is shared by all threads
            Some(s) => crate::parallel::split_runs(n, (&mut self.data[..n], 1), n, &|r, d| {
                d.copy_from_slice(&s[r])
            }),
            None => {
                for (d, s) in self.data[..n].iter_mut().zip(x.iter()) {
                    *d = *s;
                }
            }
        }
    }

    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[f32] {
        &self.data[..self.len()]
    }

    /// The elements in row-major order, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        let n = self.len();
        &mut self.data[..n]
    }

    /// A view with the current shape.
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        ArrayViewD::from_shape(IxDyn(&self.shape), self.as_slice())
            .expect("buffer length matches its shape")
    }

    /// A mutable view with the current shape.
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, f32> {
        let n = self.len();
        ArrayViewMutD::from_shape(IxDyn(&self.shape), &mut self.data[..n])
            .expect("buffer length matches its shape")
    }

    /// A 2-D view; panics if the buffer is not 2-D (an internal invariant of the caller).
    pub fn view2(&self) -> ArrayView2<'_, f32> {
        assert_eq!(self.shape.len(), 2, "buffer is not 2-D");
        ArrayView2::from_shape((self.shape[0], self.shape[1]), self.as_slice())
            .expect("buffer length matches its shape")
    }

    /// A mutable 2-D view; panics if the buffer is not 2-D (an internal invariant).
    pub fn view2_mut(&mut self) -> ArrayViewMut2<'_, f32> {
        assert_eq!(self.shape.len(), 2, "buffer is not 2-D");
        let (r, c) = (self.shape[0], self.shape[1]);
        ArrayViewMut2::from_shape((r, c), self.as_mut_slice())
            .expect("buffer length matches its shape")
    }

    /// An owned copy as a [`Tensor`].
    pub fn to_tensor(&self) -> Tensor {
        self.view().to_owned()
    }

    /// Bytes held by the allocation.
    pub fn capacity_bytes(&self) -> usize {
        self.data.capacity() * size_of::<f32>()
    }
}

/// A tensor as plain serialisable data: its shape and its entries in row-major order.
///
/// Model files, checkpoints and optimizer state store tensors in this form, so that no
/// serialisation format needs to know about `ndarray`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TensorData {
    /// The shape (at most [`MAX_RANK`](crate::limits::MAX_RANK) axes in a file).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, { crate::limits::MAX_RANK }>")]
    pub shape: Vec<usize>,
    /// The entries, row-major; `data.len()` is the product of `shape` (at most
    /// [`MAX_TENSOR_ELEMENTS`](crate::limits::MAX_TENSOR_ELEMENTS) in a file).
    #[serde(
        deserialize_with = "crate::bounded::vec::<_, _, { crate::limits::MAX_TENSOR_ELEMENTS }>"
    )]
    pub data: Vec<f32>,
}

impl TensorData {
    /// Copies a tensor (any layout) into row-major data.
    pub fn from_view(t: ArrayViewD<'_, f32>) -> Self {
        TensorData {
            shape: t.shape().to_vec(),
            data: t.iter().copied().collect(),
        }
    }

    /// Turns the data back into a tensor.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the number of entries does not match the shape.
    pub fn into_tensor(self) -> Result<Tensor> {
        let n = self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(self.data.len()) {
            return Err(Error::invalid(
                "tensor data",
                format!(
                    "{} entries do not fill shape {}",
                    self.data.len(),
                    crate::error::Shape(self.shape.clone())
                ),
            ));
        }
        Ok(ArrayD::from_shape_vec(IxDyn(&self.shape), self.data).expect("length checked"))
    }
}

/// The entries of `x` in row-major order: borrowed when `x` lies that way in memory (a
/// layer's input nearly always does), copied otherwise.
pub fn row_major<'a>(x: &ArrayViewD<'a, f32>) -> std::borrow::Cow<'a, [f32]> {
    match x.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.iter().copied().collect()),
    }
}

/// Views `x` as a matrix `[rows, cols]`, checking that it has two axes and, where given,
/// the number of columns. The error names `op` and both shapes.
pub fn as_matrix<'a>(
    x: ArrayViewD<'a, f32>,
    op: &str,
    cols: Option<usize>,
) -> Result<ArrayView2<'a, f32>> {
    let expected = || match cols {
        Some(c) => format!("[n, {c}]"),
        None => "[n, features]".to_string(),
    };
    if x.ndim() != 2 || cols.is_some_and(|c| x.shape()[1] != c) {
        return Err(Error::shape(op, expected(), x.shape()));
    }
    Ok(x.into_dimensionality::<Ix2>().expect("checked two axes"))
}

/// Checks that two tensors have the same shape.
pub fn check_same_shape(op: &str, a: &[usize], b: &[usize]) -> Result<()> {
    if a != b {
        return Err(Error::Incompatible {
            op: op.to_string(),
            reason: "shapes differ",
            a_name: "input",
            a: a.into(),
            b_name: "target",
            b: b.into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn resize_keeps_allocation_for_smaller_shapes() {
        let mut b = Buffer::new();
        b.resize(&[64, 10]);
        let cap = b.capacity_bytes();
        b.resize(&[32, 10]);
        assert_eq!(b.shape(), &[32, 10]);
        assert_eq!(b.len(), 320);
        assert_eq!(b.capacity_bytes(), cap);
        b.resize(&[64, 10]);
        assert_eq!(b.capacity_bytes(), cap);
    }

    #[test]
    fn resize_rows_sets_the_batch_axis_only() {
        let mut b = Buffer::new();
        b.resize_rows(64, &[1, 28, 28]);
        assert_eq!(b.shape(), &[64, 1, 28, 28]);
        let cap = b.capacity_bytes();
        assert_eq!(cap, 64 * 784 * 4);
        b.resize_rows(32, &[1, 28, 28]);
        assert_eq!(
            (b.shape(), b.len(), b.capacity_bytes()),
            (&[32, 1, 28, 28][..], 32 * 784, cap)
        );
    }

    #[test]
    fn assign_copies_non_contiguous_views() {
        let x = array![[1.0f32, 2.0], [3.0, 4.0]];
        let mut b = Buffer::new();
        b.assign(x.t().into_dyn());
        assert_eq!(b.as_slice(), &[1.0, 3.0, 2.0, 4.0]);
        assert_eq!(b.view2(), x.t());
    }

    #[test]
    fn tensor_data_round_trip_and_bad_length() {
        let t = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn();
        let d = TensorData::from_view(t.t());
        assert_eq!(d.shape, vec![3, 2]);
        assert_eq!(d.data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(d.into_tensor().unwrap(), t.t());
        let bad = TensorData {
            shape: vec![2, 2],
            data: vec![1.0; 3],
        };
        assert_eq!(
            bad.into_tensor().unwrap_err().to_string(),
            "tensor data: 3 entries do not fill shape [2, 2]"
        );
    }

    #[test]
    fn as_matrix_reports_shapes() {
        let x = ndarray::Array2::<f32>::zeros((4, 3)).into_dyn();
        let e = as_matrix(x.view(), "dense(5 → 2) forward", Some(5)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dense(5 → 2) forward: expected shape [n, 5], got [4, 3]"
        );
        let y = ndarray::Array3::<f32>::zeros((2, 3, 4)).into_dyn();
        assert!(as_matrix(y.view(), "op", None).is_err());
    }

    #[test]
    fn default_buffer_is_empty_and_viewable() {
        let b = Buffer::default();
        assert_eq!((b.shape(), b.len()), (&[0usize][..], 0));
        assert_eq!(b.view().len(), 0);
    }
}
