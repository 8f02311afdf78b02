//! The training-metrics plot: the loss on top, every `eval/*` metric below, over steps.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// DejaVu Sans Mono (Bitstream Vera license, see assets/fonts/), so text needs no system fonts.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
const FONT_FAMILY: &str = "sans-serif";
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 800;

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_err() {
            unreachable!("the embedded DejaVu Sans Mono is a valid TrueType font");
        }
    });
}

/// One line of a panel: a name and its (step, value) points in step order.
type Series = (String, Vec<(f64, f64)>);

/// The series of a panel, in order of first appearance; non-finite values are skipped.
fn collect_series(rows: &[Value]) -> Result<(Vec<Series>, Vec<Series>)> {
    let mut loss: Vec<Series> = Vec::new();
    let mut evals: Vec<Series> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let object = row.as_object().ok_or_else(|| {
            Error::invalid(format!("metrics row {index} is not a JSON object: {row}"))
        })?;
        let step = object.get("step").and_then(Value::as_f64).ok_or_else(|| {
            Error::invalid(format!(
                "metrics row {index} has no numeric \"step\"; found the keys {:?}",
                object.keys().collect::<Vec<_>>()
            ))
        })?;
        for (key, value) in object {
            let Some(number) = value.as_f64().filter(|v| v.is_finite()) else {
                continue;
            };
            let panel = if key == "loss" || key.starts_with("loss/") {
                &mut loss
            } else if key.starts_with("eval/") {
                &mut evals
            } else {
                continue;
            };
            match panel.iter_mut().find(|(name, _)| name == key) {
                Some((_, points)) => points.push((step, number)),
                None => panel.push((key.clone(), vec![(step, number)])),
            }
        }
    }
    // The per-loss components only add information when there are several.
    let components = loss
        .iter()
        .filter(|(name, _)| name.starts_with("loss/"))
        .count();
    if components < 2 {
        loss.retain(|(name, _)| name == "loss");
    }
    for (_, points) in loss.iter_mut().chain(evals.iter_mut()) {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok((loss, evals))
}

/// The step range (integers; a single step is widened by one) and the value range (padded by
/// 5%, or by 5% of the value when all values are equal).
fn bounds(series: &[Series]) -> (std::ops::Range<i64>, std::ops::Range<f64>) {
    let points = series.iter().flat_map(|(_, points)| points.iter());
    let (mut x_min, mut x_max) = (i64::MAX, i64::MIN);
    let (mut y_min, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x_min = x_min.min(step_coordinate(x));
        x_max = x_max.max(step_coordinate(x));
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if x_max <= x_min {
        x_max = x_min + 1;
    }
    let pad = if y_max > y_min {
        (y_max - y_min) * 0.05
    } else {
        y_min.abs().max(1.0) * 0.05
    };
    (x_min..x_max, (y_min - pad)..(y_max + pad))
}

/// Steps are whole numbers; the x axis uses integer ticks.
fn step_coordinate(step: f64) -> i64 {
    step.round() as i64
}

fn draw_error(path: &Path, error: impl std::fmt::Display) -> Error {
    Error::io(
        "cannot draw",
        path,
        std::io::Error::other(error.to_string()),
    )
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    series: &[Series],
    color_offset: usize,
    legend: SeriesLabelPosition,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    if series.is_empty() {
        let style = (FONT_FAMILY, 20)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let (width, height) = area.dim_in_pixel();
        area.draw_text(
            &format!("{title}: nothing logged"),
            &style,
            (width as i32 / 2, height as i32 / 2),
        )?;
        return Ok(());
    }
    let (x_range, y_range) = bounds(series);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT_FAMILY, 22))
        .margin(12)
        .margin_right(36)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_label)
        .label_style((FONT_FAMILY, 14))
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    for (index, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(index + color_offset).to_rgba();
        chart
            .draw_series(
                LineSeries::new(
                    points.iter().map(|&(x, y)| (step_coordinate(x), y)),
                    color.stroke_width(2),
                )
                .point_size(3),
            )?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FONT_FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Draw the rows of `metrics.jsonl` into a PNG at `path` (written atomically): the training
/// `loss` over steps on top (plus each `loss/<kind>` when there are several), every
/// `eval/<name>/<metric>` below, each with a legend. Other keys (learning rate, throughput) are
/// not drawn; non-finite values are skipped.
///
/// Errors when a row is not an object or has no numeric `step`, when no row holds a loss or an
/// eval metric, or when the file cannot be written.
pub fn plot_metrics(rows: &[Value], path: &Path) -> Result<()> {
    let (loss, evals) = collect_series(rows)?;
    if loss.is_empty() && evals.is_empty() {
        return Err(Error::invalid(format!(
            "nothing to plot: none of the {} metrics rows has a \"loss\" or an \"eval/...\" value",
            rows.len()
        )));
    }
    register_font();
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(path, e))?;
        let (upper, lower) = root.split_vertically(HEIGHT / 2);
        // Losses fall and metrics rise: their legends go where the curves usually are not.
        let (loss_legend, eval_legend) = (
            SeriesLabelPosition::UpperRight,
            SeriesLabelPosition::LowerRight,
        );
        draw_panel(&upper, "Training loss", "loss", &loss, 0, loss_legend)
            .map_err(|e| draw_error(path, e))?;
        draw_panel(
            &lower,
            "Evaluation",
            "metric",
            &evals,
            loss.len(),
            eval_legend,
        )
        .map_err(|e| draw_error(path, e))?;
        root.present().map_err(|e| draw_error(path, e))?;
    }
    let png = encode_png(&pixels, WIDTH, HEIGHT).map_err(|e| draw_error(path, e))?;
    write_atomic(path, &png)
}

fn encode_png(
    rgb: &[u8],
    width: u32,
    height: u32,
) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Best);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use serde_json::json;

    fn series_map(series: &[Series]) -> BTreeMap<String, Vec<(f64, f64)>> {
        series.iter().cloned().collect()
    }

    #[test]
    fn rows_split_into_loss_and_eval_series() {
        let rows = vec![
            json!({"step": 2, "epoch": 0.1, "loss": 0.5, "loss/margin_mse": 0.5, "learning_rate": 1e-5}),
            json!({"step": 1, "loss": 0.9}),
            json!({"step": 2, "eval/dev/ndcg@10": 0.4, "eval/dev/map": null}),
        ];
        let (loss, evals) = collect_series(&rows).unwrap();
        assert_eq!(
            series_map(&loss),
            BTreeMap::from([("loss".to_string(), vec![(1.0, 0.9), (2.0, 0.5)])]),
            "one loss component is not drawn twice; steps are sorted"
        );
        assert_eq!(
            series_map(&evals),
            BTreeMap::from([("eval/dev/ndcg@10".to_string(), vec![(2.0, 0.4)])])
        );
        let err = collect_series(&[json!({"loss": 1.0})])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("metrics row 0 has no numeric \"step\""),
            "{err}"
        );
    }

    #[test]
    fn flat_and_single_point_ranges_are_widened() {
        let (x, y) = bounds(&[("a".to_string(), vec![(5.0, 0.5)])]);
        assert_eq!(x, 5..6);
        assert!(y.start < 0.5 && y.end > 0.5);
    }
}
