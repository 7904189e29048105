//! The `highmem` command as a library: command-line handling and reports, so integration
//! tests can drive it without spawning processes.

pub mod cli;
pub mod mainjob;
pub mod reference;
pub mod scenario;
