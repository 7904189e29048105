//! Errors of the reference parser, and the helper that builds them.
//!
//! A reference file is long and several dumps look alike, so an error that only said "bad
//! number" would be useless: every error carries the file and the 1-based line. [`Src`] binds
//! a file's path once so the parsers can write `src.err(line, …)` and `src.num(line, …)`.

use std::path::{Path, PathBuf};

/// Why a reference file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Error builder bound to one file.
#[derive(Clone, Copy)]
pub(super) struct Src<'a> {
    pub(super) path: &'a Path,
}

impl Src<'_> {
    pub(super) fn err(&self, line: usize, message: impl Into<String>) -> ReferenceError {
        ReferenceError::Parse {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    pub(super) fn num<T: std::str::FromStr>(
        &self,
        line: usize,
        what: &str,
        s: &str,
    ) -> Result<T, ReferenceError> {
        s.trim()
            .parse()
            .map_err(|_| self.err(line, format!("bad {what}: {s:?}")))
    }

    pub(super) fn hex(&self, line: usize, what: &str, s: &str) -> Result<u64, ReferenceError> {
        let digits = s
            .trim()
            .strip_prefix("0x")
            .ok_or_else(|| self.err(line, format!("{what}: expected 0x…, got {s:?}")))?;
        u64::from_str_radix(digits, 16).map_err(|_| self.err(line, format!("bad {what}: {s:?}")))
    }
}
