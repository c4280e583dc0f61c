//! Training progress: a bar with loss, accuracy and ETA on a terminal, plain per-epoch
//! lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use nn_optim::{EpochEnd, EpochRecord, Observer, ObserverError};

/// Draws progress for the `train` command.
pub struct Progress {
    bar: Option<ProgressBar>,
    epochs: usize,
    steps: usize,
    loss_ema: f32,
}

impl Progress {
    /// A bar on stderr if it is a terminal, else plain lines only.
    pub fn new(epochs: usize, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        });
        Progress {
            bar,
            epochs,
            steps: 0,
            loss_ema: f32::NAN,
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(b) => b.println(text),
            // a closed standard output does not stop training: the model is still saved
            None => {
                let _ = crate::output::line(format_args!("{text}"));
            }
        }
    }
}

impl Observer for Progress {
    fn on_start(&mut self, _first: usize, _last: usize, steps: usize) {
        self.steps = steps;
    }

    fn on_step(&mut self, epoch: usize, step: usize, loss: f32) {
        self.loss_ema = if step == 1 {
            loss
        } else {
            0.95 * self.loss_ema + 0.05 * loss
        };
        if let Some(b) = &self.bar {
            if step == 1 {
                b.reset();
                b.set_length(self.steps as u64);
                b.set_prefix(format!("{epoch}/{}", self.epochs));
            }
            b.set_position(step as u64);
            if step.is_multiple_of(16) || step == self.steps {
                b.set_message(format!("loss {:.4}", self.loss_ema));
            }
        }
    }

    fn on_epoch_end(&mut self, end: &mut EpochEnd<'_>) -> Result<(), ObserverError> {
        self.line(epoch_line(end.record, self.epochs));
        Ok(())
    }
}

/// `epoch 3/10  loss 0.4123  acc 0.8712  val loss 0.3921  val acc 0.8801  lr 0.1  1.23 s`
pub fn epoch_line(r: &EpochRecord, epochs: usize) -> String {
    let mut s = format!("epoch {}/{}  loss {:.4}", r.epoch, epochs, r.train_loss);
    if let Some(a) = r.train_accuracy {
        s += &format!("  acc {a:.4}");
    }
    if let Some(v) = &r.val {
        s += &format!("  val loss {:.4}", v.loss);
        if let Some(a) = v.accuracy {
            s += &format!("  val acc {a:.4}");
        }
    }
    s + &format!("  lr {:.3e}  {:.3} s", r.lr, r.seconds)
}
