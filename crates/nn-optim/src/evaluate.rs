//! Inference over a data set: the mean loss, accuracy and confusion matrix of a model.

use ndarray::{ArrayViewD, Ix2};
use nn_core::Buffer;
use nn_layers::{Layer, Loss, Mode, Target};

use crate::batch::Data;
use crate::error::Result;
use crate::history::Evaluation;
use crate::metrics::ConfusionMatrix;

/// Loss, accuracy and confusion matrix of `model` on `data` (Eval mode, in batches).
///
/// # Errors
/// Errors of the layers and loss (shapes, targets).
pub fn evaluate(
    model: &mut dyn Layer,
    loss: &mut dyn Loss,
    data: &Data<'_>,
    batch_size: usize,
) -> Result<Evaluation> {
    let n = data.len();
    let mut loss_sum = 0.0f64;
    let mut confusion: Option<ConfusionMatrix> = None;
    let mut out = Buffer::new();
    let mut start = 0;
    while start < n {
        let end = (start + batch_size.max(1)).min(n);
        let part = data.slice(start, end);
        model.forward(part.x.view(), &mut out, Mode::Eval)?;
        let y = out.view();
        if let Target::Classes(c) = &part.target
            && let Ok(y2) = y.view().into_dimensionality::<Ix2>()
        {
            let k = y2.ncols().max(2);
            confusion
                .get_or_insert_with(|| ConfusionMatrix::new(k))
                .add_batch(y2, c);
        }
        let e = loss.forward(y, part.target.clone())?;
        loss_sum += e as f64 * (end - start) as f64;
        start = end;
    }
    Ok(Evaluation {
        loss: (loss_sum / n.max(1) as f64) as f32,
        accuracy: confusion.as_ref().map(ConfusionMatrix::accuracy),
        confusion,
    })
}

/// Rows of logits `y` whose predicted class is the target.
pub(crate) fn correct(y: ArrayViewD<'_, f32>, classes: &[usize]) -> usize {
    let Ok(y) = y.into_dimensionality::<Ix2>() else {
        return 0;
    };
    y.rows()
        .into_iter()
        .zip(classes)
        .filter(|(row, t)| crate::metrics::predicted_class(*row) == **t)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use nn_layers::{Dense, SoftmaxCrossEntropy};

    /// Rows x = [0, ln 3], [ln 3, 0], [0, 0] through the identity (z = x), classes 1, 1, 0:
    /// p = [¼, ¾], [¾, ¼], [½, ½]; losses ln 4/3, ln 4, ln 2; predictions 1, 0, 0 (a tie
    /// goes to the first class).
    #[test]
    fn mean_loss_accuracy_and_confusion_by_hand() {
        let l3 = 3f32.ln();
        let x = array![[0.0f32, l3], [l3, 0.0], [0.0, 0.0]].into_dyn();
        let classes = [1, 1, 0];
        let data = Data::new(x.view(), Target::Classes(&classes)).unwrap();
        let eye = array![[1.0f32, 0.0], [0.0, 1.0]].into_dyn();
        let mut model = Dense::from_weights(eye, None).unwrap();
        let mean = ((4f64 / 3.0).ln() + 4f64.ln() + 2f64.ln()) / 3.0;
        // batches of 2 and 1: the mean is over rows, not over batches
        for batch in [1, 2, 3, 100] {
            let e = evaluate(&mut model, &mut SoftmaxCrossEntropy::new(), &data, batch).unwrap();
            assert!(
                (f64::from(e.loss) - mean).abs() < 1e-6,
                "batch {batch}: {}",
                e.loss
            );
            assert!((e.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-6);
            let c = e.confusion.unwrap();
            assert_eq!(
                (c.get(1, 1), c.get(1, 0), c.get(0, 0), c.total()),
                (1, 1, 1, 3)
            );
        }
        assert_eq!(correct(x.view(), &classes), 2);
        assert_eq!(correct(array![1.0f32, 2.0].into_dyn().view(), &[1]), 0); // not rows
    }
}
