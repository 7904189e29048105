//! The kernel log: what `printk` / `pr_info` / `pr_warn` write, in order.
//!
//! The simulated kernel prints the same lines as the real one, without the timestamp
//! prefix (simulated time would only add noise and break byte-identical output). Each
//! line keeps its log level so callers can filter warnings and reports.

use std::fmt;

/// printk log levels (KERN_ERR … KERN_DEBUG) that the model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum LogLevel {
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// One line of the kernel log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub text: String,
}

/// The log buffer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Printk {
    lines: Vec<LogLine>,
}

impl Printk {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn log(&mut self, level: LogLevel, text: impl Into<String>) {
        // Multi-line reports become one log line per text line, as dmesg shows them.
        let text = text.into();
        for l in text.split('\n') {
            self.lines.push(LogLine {
                level,
                text: l.to_string(),
            });
        }
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.log(LogLevel::Info, text)
    }

    pub fn warn(&mut self, text: impl Into<String>) {
        self.log(LogLevel::Warning, text)
    }

    pub fn lines(&self) -> &[LogLine] {
        &self.lines
    }

    /// The first line that starts with `prefix`, if any.
    pub fn find(&self, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.text.starts_with(prefix))
            .map(|l| l.text.as_str())
    }
}

impl fmt::Display for Printk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{}", l.text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_reports_split() {
        let mut p = Printk::new();
        p.warn("a\nb");
        p.info("Memory: 1K/2K available");
        assert_eq!(p.lines().len(), 3);
        assert_eq!(p.find("Memory:"), Some("Memory: 1K/2K available"));
        assert_eq!(p.to_string(), "a\nb\nMemory: 1K/2K available\n");
    }
}
