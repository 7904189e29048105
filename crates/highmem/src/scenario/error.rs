//! Scenario errors with their place in the file, rendered like the compilers kernel people
//! use: `file:line:col: message`, the line with a caret under the span, and a hint.

use std::ops::Range;

/// A scenario that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    At(String),
}

/// Render `message` at byte range `span` of `src` (file `name`), with an optional hint.
pub fn at(name: &str, src: &str, span: Range<usize>, message: &str, hint: &str) -> ScenarioError {
    let start = span.start.min(src.len());
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = src[..start].matches('\n').count() + 1;
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let text = &src[line_start..line_end];
    let col = src[line_start..start].chars().count() + 1;
    let width = src[start..span.end.clamp(start, line_end)]
        .chars()
        .count()
        .max(1);
    let gutter = " ".repeat(line_no.to_string().len());
    let mut out = format!("{name}:{line_no}:{col}: {message}\n{gutter} |\n{line_no} | {text}\n");
    out.push_str(&format!(
        "{gutter} | {}{}\n",
        " ".repeat(col - 1),
        "^".repeat(width)
    ));
    if !hint.is_empty() {
        out.push_str(&format!("{gutter} = hint: {hint}\n"));
    }
    ScenarioError::At(out.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_the_span() {
        let src = "a = 1\nbad = \"x\"\n";
        let e = at("f.toml", src, 6..9, "unknown key `bad`", "remove it").to_string();
        assert_eq!(
            e,
            "f.toml:2:1: unknown key `bad`\n  |\n2 | bad = \"x\"\n  | ^^^\n  = hint: remove it"
        );
    }
}
