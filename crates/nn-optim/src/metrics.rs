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

use std::collections::BTreeMap;
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
///
/// Only the pairs that occur are stored (with the per-class totals), so the memory grows
/// with the rows counted, never with the square of the number of classes: a model with tens
/// of thousands of outputs evaluates in kilobytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    classes: usize,
    /// `C[t, p]` for the pairs seen, keyed by `t·classes + p`.
    #[serde(deserialize_with = "nn_core::bounded::map::<_, _, _, MAX_SAVED_PAIRS>")]
    counts: BTreeMap<u64, u64>,
    /// `Σ_p C[t, p]` by true class `t`.
    #[serde(deserialize_with = "nn_core::bounded::map::<_, _, _, MAX_SAVED_PAIRS>")]
    truth: BTreeMap<usize, u64>,
    /// `Σ_t C[t, p]` by predicted class `p`.
    #[serde(deserialize_with = "nn_core::bounded::map::<_, _, _, MAX_SAVED_PAIRS>")]
    predicted: BTreeMap<usize, u64>,
}

/// The most (true, predicted) pairs a saved matrix may hold.
const MAX_SAVED_PAIRS: usize = 1 << 20;

/// The largest matrix printed in full; larger ones print their most frequent confusions.
pub const MAX_PRINTED_CLASSES: usize = 20;

impl ConfusionMatrix {
    /// An empty matrix over `classes` classes (nothing is allocated for them).
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: BTreeMap::new(),
            truth: BTreeMap::new(),
            predicted: BTreeMap::new(),
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    fn key(&self, truth: usize, predicted: usize) -> u64 {
        truth as u64 * self.classes as u64 + predicted as u64
    }

    /// Counts one row (classes out of range are ignored; callers validate targets first).
    pub fn add(&mut self, truth: usize, predicted: usize) {
        if truth < self.classes && predicted < self.classes {
            *self.counts.entry(self.key(truth, predicted)).or_default() += 1;
            *self.truth.entry(truth).or_default() += 1;
            *self.predicted.entry(predicted).or_default() += 1;
        }
    }

    /// Counts every row of a batch of logits against its true classes.
    pub fn add_batch(&mut self, logits: ArrayView2<'_, f32>, truth: &[usize]) {
        for (row, &t) in logits.rows().into_iter().zip(truth) {
            self.add(t, predicted_class(row));
        }
    }

    /// `C[truth, predicted]` (0 outside the matrix).
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        if truth >= self.classes || predicted >= self.classes {
            return 0;
        }
        self.counts
            .get(&self.key(truth, predicted))
            .copied()
            .unwrap_or(0)
    }

    /// Rows counted.
    pub fn total(&self) -> u64 {
        self.truth.values().sum()
    }

    /// Fraction of rows predicted right (0 when empty).
    pub fn accuracy(&self) -> f32 {
        let correct: u64 = self.truth.keys().map(|&c| self.get(c, c)).sum();
        ratio(correct, self.total())
    }

    /// Of the rows predicted `c`, the fraction that are `c` (0 when none were predicted `c`).
    pub fn precision(&self, c: usize) -> f32 {
        ratio(self.get(c, c), self.predicted.get(&c).copied().unwrap_or(0))
    }

    /// Of the rows that are `c`, the fraction predicted `c` (0 when there are none).
    pub fn recall(&self, c: usize) -> f32 {
        ratio(self.get(c, c), self.truth.get(&c).copied().unwrap_or(0))
    }

    /// Merges the counts of another matrix of the same size.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        for (&k, &n) in &other.counts {
            let (t, p) = (
                (k / other.classes as u64) as usize,
                (k % other.classes as u64) as usize,
            );
            if t < self.classes && p < self.classes {
                *self.counts.entry(self.key(t, p)).or_default() += n;
                *self.truth.entry(t).or_default() += n;
                *self.predicted.entry(p).or_default() += n;
            }
        }
    }

    /// The off-diagonal pairs `(truth, predicted, count)`, most frequent first (ties by
    /// class), at most `n` of them.
    pub fn top_confusions(&self, n: usize) -> Vec<(usize, usize, u64)> {
        let k = self.classes as u64;
        let mut v: Vec<(usize, usize, u64)> = self
            .counts
            .iter()
            .map(|(&key, &c)| ((key / k) as usize, (key % k) as usize, c))
            .filter(|(t, p, _)| t != p)
            .collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        v.truncate(n);
        v
    }

    /// A table with class names (or indices), counts, and precision/recall per class; for
    /// more than [`MAX_PRINTED_CLASSES`] classes, the ten most frequent confusions instead.
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

impl ConfusionDisplay<'_> {
    /// The name of class `c`, cut to a readable length.
    fn name(&self, c: usize) -> String {
        let n = self
            .names
            .and_then(|n| n.get(c).cloned())
            .unwrap_or_else(|| c.to_string());
        truncate(&n, 24)
    }

    /// For many classes: the most frequent confusions, one per line.
    fn summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} classes (more than {MAX_PRINTED_CLASSES}): the matrix is not printed; most frequent confusions:",
            self.m.classes
        )?;
        let top = self.m.top_confusions(10);
        if top.is_empty() {
            writeln!(f, "  none")?;
        }
        for (t, p, n) in top {
            writeln!(
                f,
                "  true {} predicted as {}: {n} rows",
                self.name(t),
                self.name(p)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for ConfusionDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.m.classes;
        if k > MAX_PRINTED_CLASSES {
            return self.summary(f);
        }
        let longest = (0..k)
            .map(|c| self.name(c).chars().count())
            .max()
            .unwrap_or(1);
        let w = longest.max("true\\pred".len()); // label column
        let cw = self
            .m
            .counts
            .values()
            .map(|c| c.to_string().len())
            .max()
            .unwrap_or(1)
            .max(longest.min(8)); // count columns: names cut to 8 characters
        write!(f, "{:>w$}  ", "true\\pred")?;
        for c in 0..k {
            write!(f, " {:>cw$}", truncate(&self.name(c), cw))?;
        }
        writeln!(f, "   precision  recall")?;
        for t in 0..k {
            write!(f, "{:>w$}  ", self.name(t))?;
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

    #[test]
    fn many_classes_stay_small_and_print_a_summary() {
        // 40,000 classes: nothing is allocated per class, and the table is a summary
        let mut m = ConfusionMatrix::new(40_000);
        for i in 0..100 {
            m.add(i, i);
        }
        for _ in 0..3 {
            m.add(7, 39_999);
        }
        m.add(5, 6);
        assert_eq!((m.total(), m.get(7, 39_999), m.get(7, 7)), (104, 3, 1));
        assert_eq!(m.recall(7), 0.25); // 1 of the 4 rows of class 7
        assert_eq!(m.precision(39_999), 0.0);
        assert_eq!(m.top_confusions(5), vec![(7, 39_999, 3), (5, 6, 1)]);
        let text = m.display_with(None).to_string();
        assert_eq!(
            text,
            "40000 classes (more than 20): the matrix is not printed; most frequent confusions:\n  true 7 predicted as 39999: 3 rows\n  true 5 predicted as 6: 1 rows\n"
        );
        // its debug form lists what it stores: the four pairs and the per-class totals
        let stored = format!("{m:?}").len();
        assert!(stored < 20_000, "{stored} bytes");
    }

    #[test]
    fn merging_adds_counts_pair_by_pair() {
        // a: (0,0) ×2, (1,2); b: (2,1), (0,0), (1,1) ×3
        let mut a = ConfusionMatrix::new(3);
        for (t, p) in [(0, 0), (0, 0), (1, 2)] {
            a.add(t, p);
        }
        let mut b = ConfusionMatrix::new(3);
        for (t, p) in [(2, 1), (0, 0), (1, 1), (1, 1), (1, 1)] {
            b.add(t, p);
        }
        a.merge(&b);
        assert_eq!(a.classes(), 3);
        assert_eq!(a.get(0, 0), 3);
        assert_eq!(a.get(1, 1), 3);
        assert_eq!(a.get(1, 2), 1);
        assert_eq!(a.get(2, 1), 1);
        assert_eq!(a.get(2, 2), 0);
        assert_eq!(a.total(), 8);
        // precision of 1: 3 right of 4 predicted 1; recall of 1: 3 of 4 true 1
        assert_eq!(a.precision(1), 0.75);
        assert_eq!(a.recall(1), 0.75);
        assert_eq!(a.precision(2), 0.0); // the one row predicted 2 is a 1
        assert_eq!(a.recall(2), 0.0);
        // pairs of a larger matrix outside this one are left out
        let mut big = ConfusionMatrix::new(5);
        for (t, p) in [(4, 0), (0, 4), (3, 1), (1, 3), (2, 2)] {
            big.add(t, p);
        }
        a.merge(&big);
        assert_eq!((a.get(2, 2), a.total()), (1, 9));
    }

    #[test]
    fn rows_outside_the_classes_are_not_counted() {
        let mut m = ConfusionMatrix::new(2);
        m.add(2, 0);
        m.add(0, 2);
        m.add(1, 1);
        m.add(1, 0);
        assert_eq!(m.total(), 2);
        // (0, 2) would share its key 0·2 + 2 with (1, 0) if it were not refused
        assert_eq!(
            (
                m.get(1, 1),
                m.get(2, 0),
                m.get(0, 2),
                m.get(1, 2),
                m.get(1, 0)
            ),
            (1, 0, 0, 0, 1)
        );
        // saved and read back (the saved pairs are bounded, not refused)
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ConfusionMatrix>(&json).unwrap(), m);
    }

    #[test]
    fn ties_go_to_the_first_largest_logit() {
        assert_eq!(predicted_class(array![1.0f32, 3.0, 3.0, 2.0].view()), 1);
        assert_eq!(predicted_class(array![0.0f32].view()), 0); // σ(0) = ½ is not > ½
    }
}
