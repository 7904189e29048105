//! Print the model's swapper_pg_dir walk (as kinspect prints the real one) and memblock's
//! reservations at mem_init: `cargo run --release -p kernel --example ptdump_model -- 4096 pae`.
use kernel::config::KernelConfig;
use kernel::{boot, BootOptions};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let pae = args.get(2).is_none_or(|s| s == "pae");
    let cfg =
        KernelConfig::preset(if pae { "debian-686-pae" } else { "debian-686" }).expect("preset");
    let cpus: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut opts = BootOptions::new(mib << 20, cpus, cfg);
    opts.runtime_profile = false;
    opts.cmdline = std::env::var("CMDLINE").unwrap_or_default();
    let k = boot(&opts).expect("boot");
    match k.ptdump() {
        Ok(d) => print!("{d}"),
        Err(e) => eprintln!("{e}"),
    }
    for r in &k.memblock.reserved {
        println!(
            "reserved {:#011x}-{:#011x} {:>8} {}",
            r.base,
            r.end(),
            r.size,
            r.name
        );
    }
}
