//! Seeded train/validation/test splits.
//!
//! Rows are shuffled with the seed, then cut by the fractions. A stratified split cuts each
//! class separately, so every part keeps the class proportions of the whole (to within one
//! row per class).

use nn_core::rng;

use crate::error::{Error, Result};

/// Row indices of the three parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows.
    pub val: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
}

/// Splits `n` rows: `val` and `test` are fractions of the rows (the rest trains).
/// With `stratify`, each class (one entry per row) is split on its own.
///
/// # Errors
/// [`Error::Config`] for fractions outside `[0, 1)` or summing to 1 or more, or a
/// `stratify` slice of another length than `n`.
pub fn split_indices(
    n: usize,
    val: f32,
    test: f32,
    seed: u64,
    stratify: Option<&[usize]>,
) -> Result<Split> {
    let ok = |f: f32| f.is_finite() && (0.0..1.0).contains(&f);
    if !ok(val) || !ok(test) || val + test >= 1.0 {
        return Err(Error::Config {
            what: "split",
            message: format!(
                "validation ({val}) and test ({test}) fractions must be in [0, 1) and leave rows to train on"
            ),
        });
    }
    let mut r = nn_core::seeded(seed);
    let mut out = Split {
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    let mut cut = |mut rows: Vec<usize>, out: &mut Split| {
        rng::shuffle(&mut rows, &mut r);
        let m = rows.len();
        let n_test = (test * m as f32).round() as usize;
        let n_val = ((val * m as f32).round() as usize).min(m - n_test);
        out.test.extend_from_slice(&rows[..n_test]);
        out.val.extend_from_slice(&rows[n_test..n_test + n_val]);
        out.train.extend_from_slice(&rows[n_test + n_val..]);
    };
    match stratify {
        None => cut((0..n).collect(), &mut out),
        Some(classes) => {
            if classes.len() != n {
                return Err(Error::Config {
                    what: "split",
                    message: format!("{} class labels for {n} rows", classes.len()),
                });
            }
            let k = classes.iter().max().map_or(0, |m| m + 1);
            let mut by_class = vec![Vec::new(); k];
            for (i, &c) in classes.iter().enumerate() {
                by_class[c].push(i);
            }
            for rows in by_class {
                cut(rows, &mut out);
            }
            // interleave classes again
            rng::shuffle(&mut out.train, &mut r);
            rng::shuffle(&mut out.val, &mut r);
            rng::shuffle(&mut out.test, &mut r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_partition_the_rows() {
        let s = split_indices(100, 0.1, 0.2, 7, None).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (70, 10, 20));
        let mut all: Vec<usize> = s
            .train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(
            s,
            split_indices(100, 0.1, 0.2, 7, None).unwrap(),
            "same seed, same split"
        );
        assert_ne!(s, split_indices(100, 0.1, 0.2, 8, None).unwrap());
    }

    #[test]
    fn stratified_keeps_class_proportions() {
        // 80 rows of class 0, 20 of class 1; a 25 % test part holds 20 and 5 of them
        let classes: Vec<usize> = (0..100).map(|i| usize::from(i >= 80)).collect();
        let s = split_indices(100, 0.0, 0.25, 1, Some(&classes)).unwrap();
        let ones = s.test.iter().filter(|&&i| classes[i] == 1).count();
        assert_eq!((s.test.len(), ones), (25, 5));
    }

    #[test]
    fn bad_fractions() {
        assert!(split_indices(10, 0.5, 0.5, 0, None).is_err());
        assert!(split_indices(10, -0.1, 0.0, 0, None).is_err());
        assert!(split_indices(10, 0.1, 0.1, 0, Some(&[0; 3])).is_err());
    }
}
