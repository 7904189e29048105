//! Boot a preset kernel and dump its log and /proc files (a development aid):
//! `cargo run -p kernel --example boot_dump -- 4096 pae 1`.

use kernel::config::KernelConfig;
use kernel::procfs::live;
use kernel::{boot, BootOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let pae = args.get(2).is_none_or(|s| s == "pae");
    let cpus: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = match KernelConfig::preset(preset) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut opts = BootOptions::new(mib << 20, cpus, cfg);
    opts.cmdline = "console=ttyS0,115200 nokaslr panic=-1 ".into();
    match boot(&opts) {
        Ok(k) => {
            print!("{}", k.log);
            for f in ["meminfo", "zoneinfo", "buddyinfo"] {
                println!("===== {f}");
                print!("{}", live::read(&k, f).unwrap_or_default());
            }
            for (n, b) in &k.reserved_at_mem_init {
                println!("reserved {n}: {} pages", b / 4096);
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
