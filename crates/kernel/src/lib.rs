//! The simulated Linux i386 memory manager.
//!
//! Everything here runs "on" the simulated machine of the `machine` crate: the kernel's page
//! tables are bytes in simulated RAM, and high memory is only reachable through mappings.
//! Module names follow the Linux sources so a kernel reader finds `__rmqueue_smallest` in
//! `page_alloc`, `kmap_local_page` in `highmem`, and so on.

// Configuration and the virtual memory layout (arch/x86/mm/init_32.c, pgtable_32_areas.h).
pub mod cmdline;
pub mod config;
pub mod fixmap;
pub mod layout;

// Page frames and the page allocator (mm/page_alloc.c, include/linux/mmzone.h).
pub mod debug_vm;
pub mod gfp;
pub mod mmzone;
pub mod page;
pub mod page_alloc;
pub mod slab;
pub mod vmstat;

// /proc files in the kernel's own formats.
pub mod procfs;

// Boot: memblock, page tables, the boot sequence.
pub mod boot;
pub mod kernel;
pub mod memblock;
pub mod pagewalk;
pub mod pgtable;
pub mod pgtable_types;
pub mod printk;
pub mod ptdump;
pub mod set_memory;
pub mod thp;
pub mod tlbflush;
pub mod trace;

// High memory mappings, tasks and the scheduler that interleaves them.
pub mod design;
pub mod driver;
pub mod highmem;
pub mod sched;
pub mod variant;
pub mod x86_64;

// vmalloc, vmap, ioremap, kvmalloc (mm/vmalloc.c, mm/util.c).
pub mod vmalloc;

pub mod mm;
pub mod workload;

pub use boot::{boot, BootError, BootOptions};
pub use kernel::{Kernel, KernelAllocError};
