//! `--plot FILE.png`: loss and accuracy per epoch, drawn with plotters (pure Rust).
//!
//! Text needs a TrueType font, which is read at run time from the usual system places;
//! without one the curves are drawn unlabelled and a note says so.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use nn_optim::EpochRecord;
use plotters::prelude::*;

const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Registers a system font as `sans-serif`; returns whether one was found.
fn register_font() -> bool {
    for p in FONT_PATHS {
        if let Ok(bytes) = std::fs::read(p) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Draws the curves into `path` (PNG, 1000×450).
pub fn plot(path: &Path, epochs: &[EpochRecord]) -> Result<()> {
    let labels = register_font();
    if !labels {
        eprintln!("note: no TrueType font found; the plot has no labels");
    }
    // the file is created here first, so that a folder that does not exist or a file that
    // cannot be written is reported as such, not through the drawing library's error chain
    std::fs::File::create(path).with_context(|| path.display().to_string())?;
    let err = |e: String| {
        let first = e
            .split(['(', '\n'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        anyhow!("{}: could not draw the plot: {first}", path.display())
    };
    let root = BitMapBackend::new(path, (1000, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (left, right) = root.split_horizontally(500);
    let n = epochs.len().max(1) as f32;
    let x_range = 1f32..n.max(2.0);

    let losses: Vec<(f32, f32)> = epochs
        .iter()
        .map(|e| (e.epoch as f32, e.train_loss))
        .collect();
    let val_losses: Vec<(f32, f32)> = epochs
        .iter()
        .filter_map(|e| e.val.as_ref().map(|v| (e.epoch as f32, v.loss)))
        .collect();
    let max_loss = losses
        .iter()
        .chain(&val_losses)
        .map(|p| p.1)
        .fold(0.0f32, f32::max)
        * 1.05
        + 1e-6;
    draw(
        &left,
        labels,
        "loss",
        x_range.clone(),
        0.0..max_loss,
        &[("train", &losses, BLUE), ("validation", &val_losses, RED)],
    )
    .map_err(err)?;

    let acc: Vec<(f32, f32)> = epochs
        .iter()
        .filter_map(|e| e.train_accuracy.map(|a| (e.epoch as f32, a)))
        .collect();
    let val_acc: Vec<(f32, f32)> = epochs
        .iter()
        .filter_map(|e| {
            e.val
                .as_ref()
                .and_then(|v| v.accuracy)
                .map(|a| (e.epoch as f32, a))
        })
        .collect();
    let lo = acc
        .iter()
        .chain(&val_acc)
        .map(|p| p.1)
        .fold(1.0f32, f32::min);
    draw(
        &right,
        labels,
        "accuracy",
        x_range,
        (lo - 0.02).max(0.0)..1.0,
        &[("train", &acc, BLUE), ("validation", &val_acc, RED)],
    )
    .map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

type Series<'a> = (&'a str, &'a [(f32, f32)], RGBColor);

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    labels: bool,
    title: &str,
    x: std::ops::Range<f32>,
    y: std::ops::Range<f32>,
    series: &[Series<'_>],
) -> Result<(), String> {
    let mut b = ChartBuilder::on(area);
    b.margin(12)
        .x_label_area_size(if labels { 35 } else { 5 })
        .y_label_area_size(if labels { 55 } else { 5 });
    if labels {
        b.caption(title, ("sans-serif", 22));
    }
    let mut chart = b.build_cartesian_2d(x, y).map_err(|e| e.to_string())?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("epoch");
    if !labels {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for (name, points, color) in series {
        if points.is_empty() {
            continue;
        }
        let s = chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        if labels {
            let c = *color;
            s.label(*name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
            });
        }
    }
    if labels {
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
