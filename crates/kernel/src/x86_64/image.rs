//! The amd64 kernel image in physical memory (Debian's 6.1.0-50-amd64, `nokaslr`).
//!
//! The section sizes are the build's, as its boot line `Memory: … (14343K kernel code,
//! 2338K rwdata, 9116K rodata, 2820K init, 17356K bss, …)` prints them; the placement follows
//! `arch/x86/kernel/vmlinux.lds.S`: the text at CONFIG_PHYSICAL_START (16 MiB), the read-only
//! data from the next 2 MiB boundary, the data after `__end_rodata_hpage_align` (the next 2
//! MiB boundary again), the init sections (with the per-CPU load copy), `.smp_locks` and
//! `.data_nosave` after them, then the BSS, whose last 2 MiB-aligned part is
//! `.bss..decrypted`. The gaps those alignments leave are freed after boot ("text/rodata
//! gap", "rodata/data gap"), as are the SMP alternatives, the init sections and the unused
//! part of `.bss..decrypted` — each of which this layout names, so the late boot can free
//! exactly them and change the attributes of exactly their 2 MiB blocks (which is what the
//! DirectMap lines count). Where a symbol's place does not follow from the sizes, it is the
//! real image's (`/proc/kallsyms` of the amd64 research run,
//! `tests/realworks/research-x86_64-8192M-S512-N0-vm.txt`).

use machine::PAGE_SIZE;

const K: u64 = 1024;
const MB2: u64 = 2 << 20;

/// Section sizes of the amd64 build, in bytes (its `Memory:` line).
pub const CODE: u64 = 14343 * K;
pub const RWDATA: u64 = 2338 * K;
pub const RODATA: u64 = 9116 * K;
pub const INIT: u64 = 2820 * K;
pub const BSS: u64 = 17356 * K;
/// `__smp_locks` … `__smp_locks_end` (freed once patched: "SMP alternatives memory: 36K").
pub const SMP_LOCKS: u64 = 36 * K;
/// The unused part of `.bss..decrypted` (freed by `mem_encrypt_free_decrypted_mem`): from
/// `__start_bss_decrypted_unused` to the 2 MiB-aligned end of the BSS.
pub const DECRYPTED_UNUSED: u64 = 2036 * K;
/// What lies between the end of the data and `__init_begin` that the `Memory:` line counts
/// in none of its sizes (`.vvar`, the exception and ORC tables' tails, page alignment…):
/// `__init_begin − PAGE_ALIGN(_edata)` of the real image (0xffffffff83042000 and
/// 0xffffffff82c489c0).
pub const UNCOUNTED_SECTIONS: u64 = 4068 * K;
/// `.data_nosave`, between `__smp_locks_end` and `__bss_start` (one page).
pub const DATA_NOSAVE: u64 = PAGE_SIZE;
/// `idt_table`'s offset in the BSS (`.bss..page_aligned`; `idt_table` 0xffffffff83310000,
/// `__bss_start` 0xffffffff8330d000): the one page `idt_setup_apic_and_irq_gates` makes
/// read-only.
pub const IDT_TABLE_BSS_OFFSET: u64 = 3 * PAGE_SIZE;
/// CONFIG_PHYSICAL_START.
pub const PHYSICAL_START: u64 = 16 << 20;

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Physical addresses of the image's boundaries (`__pa_symbol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Image64 {
    pub text: u64,
    pub etext: u64,
    pub start_rodata: u64,
    pub end_rodata: u64,
    /// `__end_rodata_hpage_align`: where the data starts.
    pub sdata: u64,
    pub edata: u64,
    pub init_begin: u64,
    pub init_end: u64,
    /// `__smp_locks` (from `__init_end`) to `__smp_locks_end`.
    pub smp_locks: u64,
    pub smp_locks_end: u64,
    pub bss_start: u64,
    pub idt_table: u64,
    /// `__start_bss_decrypted_unused`: its end is the BSS's.
    pub decrypted: u64,
    /// `__bss_stop` = `__brk_base`.
    pub end: u64,
}

impl Image64 {
    /// The Debian amd64 image at its load address.
    pub fn debian() -> Image64 {
        let text = PHYSICAL_START;
        let etext = text + CODE;
        let start_rodata = align_up(etext, MB2);
        let end_rodata = start_rodata + RODATA;
        let sdata = align_up(end_rodata, MB2);
        let edata = sdata + RWDATA;
        let init_begin = align_up(edata, PAGE_SIZE) + UNCOUNTED_SECTIONS;
        let init_end = init_begin + INIT;
        let smp_locks = init_end;
        let smp_locks_end = smp_locks + SMP_LOCKS;
        let bss_start = smp_locks_end + DATA_NOSAVE;
        let end = align_up(bss_start + BSS, PAGE_SIZE);
        Image64 {
            text,
            etext,
            start_rodata,
            end_rodata,
            sdata,
            edata,
            init_begin,
            init_end,
            smp_locks,
            smp_locks_end,
            bss_start,
            idt_table: bss_start + IDT_TABLE_BSS_OFFSET,
            decrypted: end - DECRYPTED_UNUSED,
            end,
        }
    }

    /// The `Memory:` line's sizes: code, rwdata, rodata, init, bss (bytes).
    pub fn sizes(&self) -> [u64; 5] {
        [CODE, RWDATA, RODATA, INIT, BSS]
    }

    /// What the boot frees of the image after `mem_init`, in the kernel's order, as
    /// (start, end, the name of its "Freeing … memory" line).
    pub fn late_frees(&self) -> [(u64, u64, &'static str); 5] {
        let page = |x: u64| align_up(x, PAGE_SIZE);
        [
            (self.smp_locks, self.smp_locks_end, "SMP alternatives"),
            (self.decrypted, self.end, "unused decrypted"),
            (
                self.init_begin,
                self.init_end,
                "unused kernel image (initmem)",
            ),
            (
                page(self.etext),
                self.start_rodata,
                "unused kernel image (text/rodata gap)",
            ),
            (
                page(self.end_rodata),
                self.sdata,
                "unused kernel image (rodata/data gap)",
            ),
        ]
    }

    /// "Write protecting the kernel read-only data: …k": text through the aligned rodata end.
    pub fn rodata_protected_kb(&self) -> u64 {
        (self.sdata - self.text) / K
    }
}
