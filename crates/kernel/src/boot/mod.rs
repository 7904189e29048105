//! The boot of the simulated kernel, in the order Linux 6.1 i386 does it.
//!
//! (Sequence being assembled: head_32 → setup_arch → paging_init → mm_init.)

pub mod brk;
pub mod head_32;
pub mod init_32;
pub mod zone_sizes;

use machine::BusError;

/// Why the simulated boot stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// The machine or kernel configuration cannot boot (a clear user error).
    #[error("{0}")]
    Config(String),
    /// The kernel would panic here.
    #[error("Kernel panic - not syncing: {0}")]
    Panic(String),
    /// A kernel BUG.
    #[error("{0}")]
    Bug(String),
    /// A physical access outside RAM (a simulator-level bug made visible).
    #[error("bus error: {0}")]
    Bus(#[from] BusError),
}
