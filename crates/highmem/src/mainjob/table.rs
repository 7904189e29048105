//! The main job's table, as text (aligned columns, then each variant's stop in the kernel's
//! own words) and as JSON.

use super::Row;
use crate::cli::CliError;
use std::io::Write;
use std::path::PathBuf;

/// Host times, shown only under `--timing` (they differ from run to run).
pub struct Timing {
    pub total: f64,
    pub per_variant: Vec<f64>,
}

/// The columns: title and the cell of a row.
type Cell = fn(&Row) -> String;
const COLUMNS: [(&str, Cell); 10] = [
    ("variant", |r| r.variant.clone()),
    ("backends", |r| r.backends.to_string()),
    ("PageTables", |r| format!("{} kB", r.page_tables_kb)),
    ("LowFree", |r| format!("{} kB", r.low_free_kb)),
    ("HighFree", |r| format!("{} kB", r.high_free_kb)),
    ("pgfault", |r| r.pgfault.to_string()),
    ("PTE kmaps", |r| r.pte_kmaps.to_string()),
    ("INVLPGs", |r| r.invlpg.to_string()),
    ("global flushes", |r| r.global_flushes.to_string()),
    ("kmap sleeps", |r| r.kmap_sleeps.to_string()),
];

/// The table's lines: the first column left-aligned, numbers right-aligned, then the stop.
fn table_lines(rows: &[&Row]) -> Vec<String> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| COLUMNS.iter().map(|(_, f)| f(r)).collect())
        .collect();
    let widths: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (title, _))| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |texts: &[&str], last: &str| {
        let mut s = String::new();
        for (i, t) in texts.iter().enumerate() {
            if i == 0 {
                s.push_str(&format!("{t:<w$}", w = widths[0]));
            } else {
                s.push_str(&format!("  {t:>w$}", w = widths[i]));
            }
        }
        format!("{s}  {last}").trim_end().to_string()
    };
    let titles: Vec<&str> = COLUMNS.iter().map(|(t, _)| *t).collect();
    let mut out = vec![line(&titles, "stopped by")];
    for (row, c) in rows.iter().zip(&cells) {
        let texts: Vec<&str> = c.iter().map(String::as_str).collect();
        out.push(line(&texts, &row.stop.summary));
    }
    out
}

/// The whole text output.
pub fn write_text(
    out: &mut impl Write,
    header: &[String],
    rows: &[&Row],
    files: &[PathBuf],
    timing: Option<&Timing>,
) -> Result<(), CliError> {
    for l in header {
        writeln!(out, "{l}")?;
    }
    writeln!(out)?;
    for l in table_lines(rows) {
        writeln!(out, "{l}")?;
    }
    writeln!(out)?;
    writeln!(out, "Where each variant stopped, in the kernel's words:")?;
    for r in rows {
        let lines: Vec<&String> = r.stop.kernel.iter().chain(&r.stop.program).collect();
        if lines.is_empty() {
            writeln!(out, "  {}: {}", r.variant, r.stop.summary)?;
            continue;
        }
        writeln!(out, "  {}:", r.variant)?;
        for l in lines {
            writeln!(out, "    {l}")?;
        }
    }
    if !files.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        writeln!(out)?;
        writeln!(out, "wrote {}", names.join(", "))?;
    }
    if let Some(t) = timing {
        let per: Vec<String> = rows
            .iter()
            .zip(&t.per_variant)
            .map(|(r, s)| format!("{} {s:.1}s", r.variant))
            .collect();
        writeln!(out, "host time: {:.1}s ({})", t.total, per.join(", "))?;
    }
    Ok(())
}

/// The same as JSON.
pub fn json(
    header: &[String],
    rows: &[&Row],
    files: &[PathBuf],
    timing: Option<&Timing>,
) -> serde_json::Value {
    use serde_json::json;
    let mut v = json!({
        "header": header,
        "variants": rows,
        "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
    });
    if let Some(t) = timing {
        v["host_seconds"] = json!({ "total": t.total, "per_variant": t.per_variant });
    }
    v
}
