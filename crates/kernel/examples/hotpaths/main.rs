//! Hot paths for instruction counting: set up a booted machine, then perform exactly N
//! operations of one path, so that `(I(2N) - I(N)) / N` under `valgrind --tool=callgrind`
//! is the host instructions one operation costs (setup cancels out).
//!
//! `cargo run --release -p kernel --example hotpaths -- PATH N [nocheck]`
//! with PATH one of `tlb-hit`, `walk-pae`, `walk-2level`, `invlpg-walk` (mmu.rs; plus
//! `tlb-hit-2level`, `invlpg-walk-2level` and `mmu-loop`, the loop alone),
//! `pcp-order0`, `buddy-yardstick` (alloc.rs), `kmalloc-64`, `kmalloc-64-x86_64` (slab.rs;
//! the second on the 64-bit kernel's SLUB), `vmalloc-64k`
//! (vmalloc.rs), `kmap-local`, `kmap-hit` (kmap.rs; measured as Debian's build has it,
//! without CONFIG_DEBUG_KMAP_LOCAL; a third argument `check` turns the model's checker on;
//! `kmap-local-2level` is `kmap-local` on Debian's 2-level `686` kernel),
//! `shm-populate`, `shm-read` (shm.rs: N is the number of children, each touching 131072
//! pages). See BENCHMARKS.md.

mod alloc;
mod kmap;
mod mmu;
mod shm;
mod slab;
mod vmalloc;

const PATHS: &[&str] = &[
    "tlb-hit",
    "walk-pae",
    "walk-2level",
    "invlpg-walk",
    "tlb-hit-2level",
    "invlpg-walk-2level",
    "mmu-loop",
    "pcp-order0",
    "buddy-yardstick",
    "kmalloc-64",
    "kmalloc-64-x86_64",
    "vmalloc-64k",
    "kmap-local",
    "kmap-local-2level",
    "kmap-hit",
    "shm-populate",
    "shm-read",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(n)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: hotpaths PATH N   (PATH: {})", PATHS.join(", "));
        std::process::exit(2);
    };
    let Ok(n) = n.parse::<u64>() else {
        eprintln!("hotpaths: N must be a number, not {n:?}");
        std::process::exit(2);
    };
    let result = match path.as_str() {
        "tlb-hit" | "walk-pae" | "walk-2level" | "invlpg-walk" | "tlb-hit-2level"
        | "invlpg-walk-2level" | "mmu-loop" => mmu::run(path, n),
        "pcp-order0" | "buddy-yardstick" => alloc::run(path, n),
        "kmalloc-64" | "kmalloc-64-x86_64" => slab::run(path, n),
        "vmalloc-64k" => vmalloc::run(path, n),
        "kmap-local" | "kmap-local-2level" | "kmap-hit" => {
            let checker = match args.get(3).map(String::as_str) {
                None => false,
                Some("check") => true,
                Some(other) => {
                    eprintln!("hotpaths: unknown option {other:?} (only `check`)");
                    std::process::exit(2);
                }
            };
            kmap::run(path, n, checker)
        }
        "shm-populate" | "shm-read" => {
            let kernel = match args.get(3).map(String::as_str) {
                None => Ok(shm::ShmKernel::Design(
                    kernel::design::KernelDesign::default(),
                )),
                Some("x86_64") => Ok(shm::ShmKernel::X86_64),
                Some(d) => kernel::design::KernelDesign::from_name(d)
                    .map(shm::ShmKernel::Design)
                    .ok_or_else(|| format!("hotpaths: unknown design {d:?}")),
            };
            kernel.and_then(|kd| shm::run(path, n, kd))
        }
        _ => Err(format!(
            "unknown path {path:?} (one of: {})",
            PATHS.join(", ")
        )),
    };
    match result {
        Ok(check) => println!("{path} x{n}: ok (check {check:#x})"),
        Err(e) => {
            eprintln!("hotpaths: {e}");
            std::process::exit(1);
        }
    }
}
