//! `highmem shmwork SIZE N [r|w|p] [--every K]`: the reference's shm workload
//! (`shmwork.c`) on the model; the engine is `kernel::workload::shmwork`.

use super::{boot_machine, parse_ram_size, BootOpts, CliError};
use clap::Args;
use kernel::workload::shmwork::{run, Params, Touch};
use std::io::Write;

/// Options of `highmem shmwork`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ShmworkArgs {
    #[command(flatten)]
    pub boot: BootOpts,
    /// Segment size (a bare number is MiB: 512, 512M, 1G).
    #[arg(value_name = "SIZE")]
    pub size: String,
    /// Children to fork one after another.
    #[arg(value_name = "N")]
    pub n: u32,
    /// How each child touches the segment: r (read faults), w (write faults),
    /// p (madvise MADV_POPULATE_READ).
    #[arg(value_name = "TOUCH", default_value = "r")]
    pub touch: String,
    /// PROGRESS after children 0-5, 10, 20 and every K children.
    #[arg(long, value_name = "K", default_value_t = 50)]
    pub every: u32,
    /// Print host wall-clock times instead of t=0.0s.
    #[arg(long)]
    pub timing: bool,
    /// Leave out the /proc dumps.
    #[arg(long)]
    pub no_dumps: bool,
}

/// Run the workload and print its lines.
pub fn run_shmwork(
    args: &ShmworkArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let size = parse_ram_size(&args.size)
        .map_err(|e| CliError::Usage(format!("SIZE {}: {e}", args.size)))?;
    if size < (1 << 20) || size % (1 << 20) != 0 {
        return Err(CliError::Usage(format!(
            "SIZE {}: a whole number of MiB is needed",
            args.size
        )));
    }
    let touch = match args.touch.as_str() {
        "r" | "w" | "p" => Touch::from_letter(args.touch.chars().next().unwrap_or('r')),
        _ => None,
    }
    .ok_or_else(|| CliError::Usage(format!("TOUCH {}: expected r, w or p", args.touch)))?;
    let (mut k, _header) = boot_machine(&args.boot, err)?;
    let prm = Params {
        size_mib: size >> 20,
        n: args.n,
        touch,
        every: args.every,
        timing: args.timing,
        dumps: !args.no_dumps,
        design: None,
    };
    let mut io: Option<std::io::Error> = None;
    let r = run(&mut k, &prm, &mut |l| {
        if io.is_none() {
            if let Err(e) = writeln!(out, "{l}") {
                io = Some(e);
            }
        }
    });
    if let Some(e) = io {
        return Err(CliError::Io(e));
    }
    let o = r.map_err(|e| CliError::NoBoot(format!("shmwork: {e}")))?;
    if o.status != 0 {
        return Err(CliError::NoBoot(format!(
            "shmwork: the program exited with status {}",
            o.status
        )));
    }
    Ok(())
}
