//! Classification metrics: accuracy, a confusion matrix, per-class precision and recall.
//!
//! ```text
//! predicted class   argmax_j z_j          (one logit per row: 1 if z > 0, else 0)
//! accuracy          (Σ_c C[c, c]) / Σ C
//! precision(c)      C[c, c] / Σ_r C[r, c]     (of the rows predicted c, how many are c)
//! recall(c)         C[c, c] / Σ_p C[c, p]     (of the rows that are c, how many were found)
//! ```
//!
//! `C[true, predicted]` counts rows: true classes down, predictions across.

use std::fmt;

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// The class a row of logits predicts: the index of the largest logit, or, for a single
/// logit (binary classification), 1 when it is positive.
pub fn predicted_class(row: ndarray::ArrayView1<'_, f32>) -> usize {
    if row.len() == 1 {
        return usize::from(row[0] > 0.0); // σ(z) > ½ ⇔ z > 0
    }
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Counts of (true class, predicted class) pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An empty matrix over `classes` classes.
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Counts one row (classes out of range are ignored; callers validate targets first).
    pub fn add(&mut self, truth: usize, predicted: usize) {
        if truth < self.classes && predicted < self.classes {
            self.counts[truth * self.classes + predicted] += 1;
        }
    }

    /// Counts every row of a batch of logits against its true classes.
    pub fn add_batch(&mut self, logits: ArrayView2<'_, f32>, truth: &[usize]) {
        for (row, &t) in logits.rows().into_iter().zip(truth) {
            self.add(t, predicted_class(row));
        }
    }

    /// `C[truth, predicted]`.
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// Rows counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Fraction of rows predicted right (0 when empty).
    pub fn accuracy(&self) -> f32 {
        let correct: u64 = (0..self.classes).map(|c| self.get(c, c)).sum();
        ratio(correct, self.total())
    }

    /// Of the rows predicted `c`, the fraction that are `c` (0 when none were predicted `c`).
    pub fn precision(&self, c: usize) -> f32 {
        let predicted: u64 = (0..self.classes).map(|r| self.get(r, c)).sum();
        ratio(self.get(c, c), predicted)
    }

    /// Of the rows that are `c`, the fraction predicted `c` (0 when there are none).
    pub fn recall(&self, c: usize) -> f32 {
        let actual: u64 = (0..self.classes).map(|p| self.get(c, p)).sum();
        ratio(self.get(c, c), actual)
    }

    /// Merges the counts of another matrix of the same size.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// A table with class names (or indices), counts, and precision/recall per class.
    pub fn display_with<'a>(&'a self, names: Option<&'a [String]>) -> impl fmt::Display + 'a {
        ConfusionDisplay { m: self, names }
    }
}

fn ratio(a: u64, b: u64) -> f32 {
    if b == 0 { 0.0 } else { a as f32 / b as f32 }
}

struct ConfusionDisplay<'a> {
    m: &'a ConfusionMatrix,
    names: Option<&'a [String]>,
}

impl fmt::Display for ConfusionDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.m.classes;
        let name = |c: usize| -> String {
            self.names
                .and_then(|n| n.get(c).cloned())
                .unwrap_or_else(|| c.to_string())
        };
        let longest = (0..k).map(|c| name(c).chars().count()).max().unwrap_or(1);
        let w = longest.max("true\\pred".len()); // label column
        let cw = self
            .m
            .counts
            .iter()
            .map(|c| c.to_string().len())
            .max()
            .unwrap_or(1)
            .max(longest.min(8)); // count columns: names cut to 8 characters
        write!(f, "{:>w$}  ", "true\\pred")?;
        for c in 0..k {
            write!(f, " {:>cw$}", truncate(&name(c), cw))?;
        }
        writeln!(f, "   precision  recall")?;
        for t in 0..k {
            write!(f, "{:>w$}  ", name(t))?;
            for p in 0..k {
                write!(f, " {:>cw$}", self.m.get(t, p))?;
            }
            writeln!(
                f,
                "   {:>9.3}  {:>6.3}",
                self.m.precision(t),
                self.m.recall(t)
            )?;
        }
        Ok(())
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn counts_and_rates_by_hand() {
        // logits rows predict: 0, 1, 1, 2, 0 (the middle rows' argmax); truth: 0, 1, 0, 2, 2
        let z = array![
            [3.0f32, 1.0, 0.0],
            [0.0, 2.0, 1.0],
            [0.5, 0.9, 0.1],
            [0.0, 0.0, 1.0],
            [1.0, 0.0, 0.5]
        ];
        let mut m = ConfusionMatrix::new(3);
        m.add_batch(z.view(), &[0, 1, 0, 2, 2]);
        // C = [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
        assert_eq!(
            (m.get(0, 0), m.get(0, 1), m.get(2, 0), m.get(2, 2)),
            (1, 1, 1, 1)
        );
        assert_eq!(m.total(), 5);
        assert_eq!(m.accuracy(), 0.6); // 3 of 5
        assert_eq!(m.precision(0), 0.5); // predicted 0: rows 0 and 4, one right
        assert_eq!(m.recall(0), 0.5); // true 0: rows 0 and 2, one found
        assert_eq!(m.precision(1), 0.5);
        assert_eq!(m.recall(1), 1.0);
        assert_eq!(m.recall(2), 0.5);
        let table = m.display_with(None).to_string();
        assert!(table.contains("precision"), "{table}");
    }

    #[test]
    fn binary_single_logit() {
        assert_eq!(predicted_class(array![0.3f32].view()), 1);
        assert_eq!(predicted_class(array![-0.3f32].view()), 0);
        // ties go to the first index
        assert_eq!(predicted_class(array![1.0f32, 1.0].view()), 0);
    }
}
