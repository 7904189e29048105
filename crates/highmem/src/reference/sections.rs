//! Splitting a reference file into its `=====BEGIN path=====` … `=====END path=====` dumps.
//!
//! Blocks nest (a workload's `shmwork` block holds later /proc dumps) and a path may be dumped
//! more than once, so the split keeps every block with its depth and BEGIN line, in file
//! order. The dump parsers walk a block's lines with their file line numbers ([`numbered`]),
//! and share the `Node N, zone NAME` prefix of buddyinfo, pagetypeinfo and zoneinfo.

use super::error::{ReferenceError, Src};
use serde::Serialize;

/// One `=====BEGIN path=====` … `=====END path=====` block.
#[derive(Clone, Debug, Serialize)]
pub struct Section {
    pub path: String,
    /// 1-based line of the BEGIN marker; the text starts on the next line.
    pub begin_line: usize,
    /// Number of enclosing blocks.
    pub depth: usize,
    /// The lines between the markers, each with its newline: the file as it was read.
    pub text: String,
}

/// The lines of the first `=====BEGIN name=====` block of a capture's text (empty if there
/// is none): what the tests that read a capture without parsing it all compare.
pub fn first_block<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let begin = format!("=====BEGIN {name}=====");
    let end = format!("=====END {name}=====");
    text.lines()
        .skip_while(|l| *l != begin)
        .skip(1)
        .take_while(|l| *l != end)
        .collect()
}

/// The RAM of a capture's machine in MiB: its ORACLE-RUN line's `ram=…M`.
pub fn capture_ram_mib(text: &str) -> Option<u64> {
    text.lines()
        .next()?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("ram="))?
        .strip_suffix('M')?
        .parse()
        .ok()
}

pub(super) fn parse_sections(src: Src, lines: &[&str]) -> Result<Vec<Section>, ReferenceError> {
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut done: Vec<Section> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(path) = line
            .strip_prefix("=====BEGIN ")
            .and_then(|r| r.strip_suffix("====="))
        {
            open.push((path.to_string(), i));
        } else if let Some(path) = line
            .strip_prefix("=====END ")
            .and_then(|r| r.strip_suffix("====="))
        {
            let (begin_path, begin) = open
                .pop()
                .ok_or_else(|| src.err(i + 1, format!("END of {path} without BEGIN")))?;
            if begin_path != path {
                return Err(src.err(
                    i + 1,
                    format!("END of {path} closes {begin_path} (line {})", begin + 1),
                ));
            }
            let mut text = String::new();
            for l in &lines[begin + 1..i] {
                text.push_str(l);
                text.push('\n');
            }
            done.push(Section {
                path: begin_path,
                begin_line: begin + 1,
                depth: open.len(),
                text,
            });
        }
    }
    if let Some((path, begin)) = open.pop() {
        return Err(src.err(begin + 1, format!("{path} is never closed")));
    }
    done.sort_by_key(|s| s.begin_line);
    Ok(done)
}

/// The section's lines with their 1-based file line numbers.
pub(super) fn numbered(s: &Section) -> impl Iterator<Item = (usize, &str)> {
    s.text
        .lines()
        .enumerate()
        .map(move |(i, l)| (s.begin_line + 1 + i, l))
}

/// `Node N, zone NAME…`: the node number and what follows `zone`.
pub(super) fn node_zone_prefix<'a>(
    src: Src,
    n: usize,
    line: &'a str,
) -> Result<(u32, &'a str), ReferenceError> {
    let rest = line
        .strip_prefix("Node ")
        .ok_or_else(|| src.err(n, "expected 'Node N, zone …'"))?;
    let (node, rest) = rest
        .split_once(',')
        .ok_or_else(|| src.err(n, "expected ',' after the node"))?;
    let rest = rest
        .trim_start()
        .strip_prefix("zone")
        .ok_or_else(|| src.err(n, "expected 'zone'"))?;
    Ok((src.num(n, "node", node)?, rest))
}
