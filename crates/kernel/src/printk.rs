//! The kernel log: what `printk` / `pr_info` / `pr_warn` write, in order.
//!
//! The simulated kernel prints the same lines as the real one, without the timestamp
//! prefix (simulated time would only add noise and break byte-identical output). Each
//! line keeps its log level so callers can filter warnings and reports.

use std::fmt;

/// printk log levels (KERN_ERR … KERN_DEBUG) that the model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum LogLevel {
    Emerg = 0,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl LogLevel {
    /// Shown on the console at the default console_loglevel (7): everything but debug.
    pub fn on_console(self) -> bool {
        self != LogLevel::Debug
    }
}

/// One line of the kernel log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernMsg {
    pub level: LogLevel,
    pub text: String,
}

impl KernMsg {
    pub fn new(level: LogLevel, text: String) -> KernMsg {
        KernMsg { level, text }
    }
}

/// The log buffer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Printk {
    lines: Vec<KernMsg>,
}

impl Printk {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn log(&mut self, level: LogLevel, text: impl Into<String>) {
        // Multi-line reports become one log line per text line, as dmesg shows them.
        let text = text.into();
        for l in text.split('\n') {
            self.lines.push(KernMsg {
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

    pub fn lines(&self) -> &[KernMsg] {
        &self.lines
    }

    /// Append already-formed messages (e.g. the layout's boot lines).
    pub fn extend(&mut self, msgs: impl IntoIterator<Item = KernMsg>) {
        self.lines.extend(msgs);
    }

    /// What the console shows: every line but debug ones.
    pub fn console(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(|l| l.level.on_console())
            .map(|l| l.text.as_str())
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
