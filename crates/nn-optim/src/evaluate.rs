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
