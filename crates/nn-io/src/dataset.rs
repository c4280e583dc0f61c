//! An in-memory data set: inputs as an f32 tensor, rows first, and their targets.

use ndarray::{ArrayViewD, Axis, IxDyn};
use nn_core::Tensor;
use nn_layers::Target;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The targets of a data set.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One class index per row.
    Classes(Vec<usize>),
    /// Real values, `[n, …]`.
    Values(Tensor),
}

/// Inputs, targets and the names that go with them.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Inputs: `[n, features]` rows, or `[n, c, h, w]` images.
    pub x: Tensor,
    /// Targets, one per row.
    pub targets: Targets,
    /// Names of the classes, indexed by class (class targets read from text labels).
    pub class_names: Option<Vec<String>>,
    /// Names of the input features (CSV header), if known.
    pub feature_names: Vec<String>,
    /// Columns of the source that were not read (neither a feature nor the label).
    pub ignored_columns: Vec<String>,
}

impl Dataset {
    /// Pairs inputs with targets, checking that the row counts agree.
    ///
    /// # Errors
    /// [`Error::Mismatch`] naming both counts.
    pub fn new(x: Tensor, targets: Targets) -> Result<Self> {
        let rows = match &targets {
            Targets::Classes(c) => c.len(),
            Targets::Values(t) => t.shape().first().copied().unwrap_or(0),
        };
        if x.ndim() == 0 || x.shape()[0] != rows {
            return Err(Error::Mismatch {
                message: format!(
                    "inputs have {} rows but there are {rows} targets",
                    x.shape().first().copied().unwrap_or(0)
                ),
            });
        }
        Ok(Dataset {
            x,
            targets,
            class_names: None,
            feature_names: Vec::new(),
            ignored_columns: Vec::new(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.x.shape()[0]
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one input row (`[features]` or `[c, h, w]`).
    pub fn input_shape(&self) -> &[usize] {
        &self.x.shape()[1..]
    }

    /// The inputs as a view.
    pub fn x(&self) -> ArrayViewD<'_, f32> {
        self.x.view()
    }

    /// The targets in the form losses take.
    pub fn target(&self) -> Target<'_> {
        match &self.targets {
            Targets::Classes(c) => Target::Classes(c),
            Targets::Values(t) => Target::Values(t.view()),
        }
    }

    /// The class indices, if the targets are classes.
    pub fn classes(&self) -> Option<&[usize]> {
        match &self.targets {
            Targets::Classes(c) => Some(c),
            Targets::Values(_) => None,
        }
    }

    /// Number of classes: the names' count, else one more than the largest index.
    pub fn num_classes(&self) -> Option<usize> {
        let c = self.classes()?;
        Some(match &self.class_names {
            Some(n) => n.len(),
            None => c.iter().max().map_or(0, |m| m + 1),
        })
    }

    /// The rows `idx`, in that order, as a new data set (names kept).
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let x = self.x.select(Axis(0), idx);
        let targets = match &self.targets {
            Targets::Classes(c) => Targets::Classes(idx.iter().map(|&i| c[i]).collect()),
            Targets::Values(t) => Targets::Values(t.select(Axis(0), idx)),
        };
        Dataset {
            x,
            targets,
            class_names: self.class_names.clone(),
            feature_names: self.feature_names.clone(),
            ignored_columns: self.ignored_columns.clone(),
        }
    }

    /// Images `[n, c, h, w]` as rows `[n, c·h·w]` (row-major, so channel-major per row).
    pub fn flattened(mut self) -> Dataset {
        let n = self.len();
        let features: usize = self.input_shape().iter().product();
        let x = std::mem::replace(&mut self.x, Tensor::zeros(IxDyn(&[0])));
        self.x = x
            .into_shape_with_order(IxDyn(&[n, features]))
            .expect("a standard-layout tensor reshapes to rows");
        self
    }
}

/// Statistics that map raw features to the scale the model was trained on, fitted on the
/// training rows only and kept with the model for inference.
///
/// ```text
/// standardise   x' = (x − μ_j) / σ_j        μ, σ per feature over the training rows (σ = 1 if 0)
/// min–max       x' = (x − min_j) / (max_j − min_j)   → [0, 1] on the training rows
/// scale         x' = x · s                  e.g. s = 1/255 for 8-bit pixels
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Normalization {
    /// Per-feature mean and standard deviation.
    Standardize {
        /// `μ_j`.
        mean: Vec<f32>,
        /// `σ_j` (never 0).
        std: Vec<f32>,
    },
    /// Per-feature minimum and range.
    MinMax {
        /// `min_j`.
        min: Vec<f32>,
        /// `max_j − min_j` (never 0).
        range: Vec<f32>,
    },
    /// One factor for every entry.
    Scale {
        /// `s`.
        factor: f32,
    },
}

/// Per-feature columns of a `[n, …]` tensor: feature `j` is entry `j` of each flattened row.
fn feature_columns(x: &Tensor) -> (usize, usize) {
    let n = x.shape().first().copied().unwrap_or(0);
    let f = x.len().checked_div(n).unwrap_or(0);
    (n, f)
}

impl Normalization {
    /// Fits per-feature mean and standard deviation (population, in f64) on `x`.
    pub fn fit_standardize(x: &Tensor) -> Self {
        let (n, f) = feature_columns(x);
        let mut sum = vec![0.0f64; f];
        let mut sq = vec![0.0f64; f];
        for row in x
            .as_standard_layout()
            .as_slice()
            .expect("standard layout")
            .chunks(f.max(1))
        {
            for (j, &v) in row.iter().enumerate() {
                sum[j] += v as f64;
                sq[j] += (v as f64) * (v as f64);
            }
        }
        let nf = n.max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / nf) as f32).collect(); // μ = Σx / n
        let std = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| {
                let m = s / nf;
                let var = (q / nf - m * m).max(0.0); // σ² = Σx²/n − μ²
                let sd = var.sqrt() as f32;
                if sd > 1e-12 { sd } else { 1.0 }
            })
            .collect();
        Normalization::Standardize { mean, std }
    }

    /// Fits per-feature minimum and maximum on `x`.
    pub fn fit_min_max(x: &Tensor) -> Self {
        let (_, f) = feature_columns(x);
        let mut lo = vec![f32::INFINITY; f];
        let mut hi = vec![f32::NEG_INFINITY; f];
        for row in x
            .as_standard_layout()
            .as_slice()
            .expect("standard layout")
            .chunks(f.max(1))
        {
            for (j, &v) in row.iter().enumerate() {
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
            }
        }
        let range = lo
            .iter()
            .zip(&hi)
            .map(|(&l, &h)| {
                // in f64, and at most f32::MAX, so that extreme values give a finite range
                let r = (f64::from(h) - f64::from(l)).min(f64::from(f32::MAX)) as f32;
                if r > 0.0 { r } else { 1.0 }
            })
            .collect();
        let min = lo
            .into_iter()
            .map(|l| if l.is_finite() { l } else { 0.0 })
            .collect();
        Normalization::MinMax { min, range }
    }

    /// Checks statistics read from a file: `features` values per row, all finite, the
    /// divisors (`σ`, the range) positive, a scale factor finite and non-zero.
    ///
    /// # Errors
    /// A sentence naming the statistic and the first bad value.
    pub fn validate(&self, features: usize) -> std::result::Result<(), String> {
        let check = |what: &str, v: &[f32], positive: bool| -> std::result::Result<(), String> {
            if v.len() != features {
                return Err(format!(
                    "{} values of {what} for an input of {features}",
                    v.len()
                ));
            }
            match v
                .iter()
                .position(|x| !x.is_finite() || (positive && *x <= 0.0))
            {
                Some(i) => Err(format!(
                    "{what}[{i}] is {}; it must be finite{}",
                    v[i],
                    if positive { " and > 0" } else { "" }
                )),
                None => Ok(()),
            }
        };
        match self {
            Normalization::Standardize { mean, std } => {
                check("mean", mean, false)?;
                check("std", std, true)
            }
            Normalization::MinMax { min, range } => {
                check("min", min, false)?;
                check("range", range, true)
            }
            Normalization::Scale { factor } if factor.is_finite() && *factor != 0.0 => Ok(()),
            Normalization::Scale { factor } => Err(format!(
                "scale factor {factor}; it must be finite and non-zero"
            )),
        }
    }

    /// Number of features the statistics were fitted on (`None` for a plain scale).
    pub fn features(&self) -> Option<usize> {
        match self {
            Normalization::Standardize { mean, .. } => Some(mean.len()),
            Normalization::MinMax { min, .. } => Some(min.len()),
            Normalization::Scale { .. } => None,
        }
    }

    /// Applies the mapping to every row of `x` in place.
    ///
    /// # Errors
    /// [`Error::Mismatch`] when `x` has another number of features than the statistics.
    pub fn apply(&self, x: &mut Tensor) -> Result<()> {
        let (_, f) = feature_columns(x);
        if let Some(k) = self.features()
            && k != f
        {
            return Err(Error::Mismatch {
                message: format!(
                    "normalisation was fitted on {k} features, the data has {f} per row"
                ),
            });
        }
        let slice = x.as_slice_mut().expect("data sets are in standard layout");
        match self {
            Normalization::Standardize { mean, std } => {
                for row in slice.chunks_mut(f.max(1)) {
                    for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
                        *v = (*v - m) / s; // x' = (x − μ)/σ
                    }
                }
            }
            Normalization::MinMax { min, range } => {
                for row in slice.chunks_mut(f.max(1)) {
                    for ((v, m), r) in row.iter_mut().zip(min).zip(range) {
                        *v = (*v - m) / r; // x' = (x − min)/(max − min)
                    }
                }
            }
            Normalization::Scale { factor } => slice.iter_mut().for_each(|v| *v *= factor), // x' = x·s
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn standardize_by_hand() {
        // column 0: [1, 3] → μ = 2, σ = 1; column 1: [5, 5] → μ = 5, σ = 0 → 1
        let x = array![[1.0f32, 5.0], [3.0, 5.0]].into_dyn();
        let n = Normalization::fit_standardize(&x);
        assert_eq!(
            n,
            Normalization::Standardize {
                mean: vec![2.0, 5.0],
                std: vec![1.0, 1.0]
            }
        );
        let mut y = x.clone();
        n.apply(&mut y).unwrap();
        assert_eq!(y, array![[-1.0f32, 0.0], [1.0, 0.0]].into_dyn());
        let mut bad = array![[1.0f32, 2.0, 3.0]].into_dyn();
        assert_eq!(
            n.apply(&mut bad).unwrap_err().to_string(),
            "normalisation was fitted on 2 features, the data has 3 per row"
        );
    }

    #[test]
    fn min_max_maps_training_rows_to_unit_range() {
        // column 0: [2, 4, 6] → [0, 0.5, 1]; column 1: [−1, 1, 0] → [0, 1, 0.5]
        let x = array![[2.0f32, -1.0], [4.0, 1.0], [6.0, 0.0]].into_dyn();
        let n = Normalization::fit_min_max(&x);
        let mut y = x.clone();
        n.apply(&mut y).unwrap();
        assert_eq!(y, array![[0.0f32, 0.0], [0.5, 1.0], [1.0, 0.5]].into_dyn());
        let mut p = array![[255.0f32, 0.0]].into_dyn();
        Normalization::Scale {
            factor: 1.0 / 255.0,
        }
        .apply(&mut p)
        .unwrap();
        assert_eq!(p, array![[1.0f32, 0.0]].into_dyn());
    }

    #[test]
    fn subset_and_flatten() {
        let x = ndarray::Array4::<f32>::from_shape_fn((3, 1, 2, 2), |(n, _, h, w)| {
            (n * 4 + h * 2 + w) as f32
        })
        .into_dyn();
        let d = Dataset::new(x, Targets::Classes(vec![0, 1, 2])).unwrap();
        let s = d.subset(&[2, 0]);
        assert_eq!(s.classes().unwrap(), &[2, 0]);
        assert_eq!(s.input_shape(), &[1, 2, 2]);
        let f = s.flattened();
        assert_eq!(
            f.x,
            array![[8.0f32, 9.0, 10.0, 11.0], [0.0, 1.0, 2.0, 3.0]].into_dyn()
        );
        assert!(Dataset::new(Tensor::zeros(IxDyn(&[2, 3])), Targets::Classes(vec![1])).is_err());
    }
}
