use kernel::config::KernelConfig;
use kernel::workload::shmwork::{run, Params, Touch};
use kernel::{boot, BootOptions};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ram: u64 = a[1].parse().unwrap();
    let s: u64 = a[2].parse().unwrap();
    let n: u32 = a[3].parse().unwrap();
    let touch = Touch::from_letter(a[4].chars().next().unwrap()).unwrap();
    let append = a.get(5).cloned().unwrap_or_default();
    let cfg = KernelConfig::preset("debian-686-pae").unwrap();
    let mut opts = BootOptions::new(ram << 20, 1, cfg);
    opts.cmdline = append;
    let mut k = boot(&opts).unwrap();
    let t = std::time::Instant::now();
    let prm = Params { size_mib: s, n, touch, every: 10, timing: true, dumps: false };
    let out = run(&mut k, &prm, &mut |l| println!("{l}")).unwrap();
    eprintln!("elapsed {:?} kmaps {:?}", t.elapsed(), k.mm.counters);
    kernel::workload::shmwork::finish(&mut k, &out).unwrap();
    eprintln!("after finish PageTables={}", k.node.vm_stat[kernel::vmstat::NodeStatItem::NrPagetable]);
}
