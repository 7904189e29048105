//! The main job's plot: PageTables, LowFree and HighFree (MiB) against backends, one panel
//! each, one line per variant, as SVG and PNG. The PNG goes through plotters' bitmap backend
//! with DejaVu Sans compiled in (ab_glyph), so it renders on a machine without any system
//! font; the SVG names the font and leaves the drawing of text to the viewer.

use super::variant_run::Sample;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::{Path, PathBuf};
use std::sync::Once;

/// One line of each panel.
pub struct Line<'a> {
    pub variant: &'a str,
    /// Position of the variant in seed 001's list: its colour.
    pub colour: usize,
    pub samples: &'a [Sample],
}

/// Size of both images, pixels.
const SIZE: (u32, u32) = (1000, 1200);

/// Colours by position in seed 001's list, so a variant keeps its colour in every panel.
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// The figure each panel shows, in kB.
type Figure = fn(&Sample) -> u64;
const PANELS: [(&str, Figure); 3] = [
    ("PageTables", |s| s.page_tables_kb),
    ("LowFree", |s| s.low_free_kb),
    ("HighFree", |s| s.high_free_kb),
];

/// Register the compiled-in font once for the bitmap backend.
fn embedded_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "the embedded DejaVu Sans font does not load".to_string());
    });
    result
}

/// Write `PREFIX.svg` and `PREFIX.png`; returns the paths written.
pub fn write_plots(prefix: &Path, title: &str, lines: &[Line]) -> Result<Vec<PathBuf>, String> {
    embedded_font()?;
    let svg = prefix.with_extension("svg");
    let png = prefix.with_extension("png");
    let err = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, title, lines).map_err(|e| err(&svg, &e))?;
        root.present().map_err(|e| err(&svg, &e))?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, title, lines).map_err(|e| err(&png, &e))?;
        root.present().map_err(|e| err(&png, &e))?;
    }
    Ok(vec![svg, png])
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    lines: &[Line],
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let max_backends = lines
        .iter()
        .flat_map(|l| l.samples.last())
        .map(|s| s.backends)
        .max()
        .unwrap_or(0)
        .max(1);
    for (i, (area, (name, figure))) in root.split_evenly((3, 1)).iter().zip(PANELS).enumerate() {
        panel(area, name, figure, max_backends, lines, i == 0)?;
    }
    Ok(())
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    name: &str,
    figure: Figure,
    max_backends: u32,
    lines: &[Line],
    legend: bool,
) -> DrawResult<DB> {
    let top = lines
        .iter()
        .flat_map(|l| l.samples.iter().map(figure))
        .max()
        .unwrap_or(0);
    let y_max = (mib(top) * 1.08).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .caption(format!("{name} (MiB)"), ("sans-serif", 20))
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..max_backends, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("backends")
        .y_desc("MiB")
        .label_style(("sans-serif", 14))
        .draw()?;
    for line in lines {
        let colour = COLOURS[line.colour % COLOURS.len()];
        // Variants with the same figures draw the same line: the earlier ones are wider, so
        // each stays visible under the next.
        let width = 6u32.saturating_sub(line.colour as u32).max(2);
        let points = line.samples.iter().map(|s| (s.backends, mib(figure(s))));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(width)))?
            .label(line.variant)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
            });
    }
    if !legend {
        return Ok(());
    }
    // One legend for the three panels (a variant keeps its colour), where the page
    // tables, growing from zero, leave room.
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}
