//! `highmem shmwork` where `shmwork.c` itself fails or the kernel cannot go on: the
//! program's 32-bit `size_t` wrapping at 4 GiB, `shmget` refused (SHMMAX, overcommit),
//! `shmat` finding no gap, and the OOM killer with nothing to kill (the parent is
//! `oom_score_adj -1000`). Each prints what the real program or kernel prints, ends with
//! a non-zero status and never panics the host.

mod common;

/// `highmem ARGS`: exit code, stdout, stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = highmem::cli::run(args.iter().copied(), &mut out, &mut err);
    let s = |v: Vec<u8>| String::from_utf8(v).expect("utf-8");
    (code, s(out), s(err))
}

fn shmwork(size_mib: u64, n: u32, machine: &[&str], dumps: bool) -> (i32, String, String) {
    let size = format!("{size_mib}M");
    let n = n.to_string();
    let mut args = vec!["highmem", "shmwork", size.as_str(), n.as_str(), "r"];
    args.extend_from_slice(machine);
    if !dumps {
        args.push("--no-dumps");
    }
    run(&args)
}

const PAE_8G: &[&str] = &["--ram", "8G", "--pae"];

#[test]
fn the_size_wraps_at_4_gib_as_the_programs_size_t_does() {
    // (size_t)4096 << 20 is 0 in a 32-bit program: shmget(0) is EINVAL.
    let (code, out, _) = shmwork(4096, 1, PAE_8G, false);
    assert_eq!(code, 1);
    assert!(out.starts_with("SHMWORK S=4096MiB N=1 touch=r every=50 pages_per_child=0\n"));
    assert!(
        out.contains("\nSHMWORK shmget failed: Invalid argument\n"),
        "{out}"
    );
    // 5000 MiB leaves 904 MiB: the program runs on that.
    let pages = ((5000u64 << 20) % (1 << 32)) / 4096;
    let (code, out, err) = shmwork(5000, 1, PAE_8G, false);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("pages_per_child={pages}\n")), "{out}");
    assert!(
        out.contains(&format!("SHMWORK populated {pages} pages")),
        "{out}"
    );
    assert!(out.contains("SHMWORK children_done=1 oom=0"), "{out}");
}

#[test]
fn shmget_refuses_what_shmmax_or_overcommit_refuses() {
    // SHMMAX on i386 is 4 GiB - 16 MiB - 1: 4080 MiB is one byte too many.
    let (code, out, _) = shmwork(4080, 1, PAE_8G, false);
    assert_eq!(code, 1);
    assert!(
        out.contains("\nSHMWORK shmget failed: Invalid argument\n"),
        "{out}"
    );
    // On the 64-bit kernel SHMMAX is far away: the same size gets to shmat, which finds
    // no 4080 MiB gap in a 32-bit address space.
    let (code, out, _) = shmwork(4080, 1, &["--ram", "8G", "--variant", "x86_64"], false);
    assert_eq!(code, 1);
    assert!(
        out.contains("\nSHMWORK shmat failed: Cannot allocate memory\n"),
        "{out}"
    );
    // More than the machine's RAM (no swap): __vm_enough_memory says no.
    let (code, out, _) = shmwork(2000, 1, &["--ram", "1G", "--pae"], false);
    assert_eq!(code, 1);
    assert!(
        out.contains("\nSHMWORK shmget failed: Cannot allocate memory\n"),
        "{out}"
    );
}

/// The segment goes right below `[vvar]` while the gap down to the heap holds it; one MiB
/// more than that gap and the parent's shmat fails (no other gap is as large), the
/// program says so and exits, and nothing it had is left behind in the log's eyes.
#[test]
fn shmat_fails_where_no_gap_holds_the_segment() {
    let (code, out, err) = shmwork(64, 1, PAE_8G, true);
    assert_eq!(code, 0, "{err}");
    let maps = common::dump(&out, "/maps").expect("the child's maps");
    let fits = common::heap_to_vvar(maps) >> 20;
    assert!(fits > 2048, "the gap is {fits} MiB");

    let (code, out, err) = shmwork(fits, 0, PAE_8G, true);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("SHMWORK populated {} pages", fits << 8)));
    let (code, out, err) = shmwork(fits + 1, 0, PAE_8G, true);
    assert_eq!(code, 1);
    assert!(err.contains("the program exited with status 1"), "{err}");
    let lines: Vec<&str> = out.lines().take(3).collect();
    assert_eq!(lines[1], "SHMWORK shmat failed: Cannot allocate memory");
    // The console then goes on with the kernel log (the harness's dmesg), no PROGRESS.
    assert_eq!(lines[2], "=====BEGIN dmesg=====");
    assert!(!out.contains("PROGRESS"));
}

/// A segment as large as the RAM the kernel manages passes shmget's overcommit check,
/// but the parent (oom_score_adj -1000) cannot populate it: the OOM killer finds no task
/// it may kill (init and its stand-in never are) and the kernel panics.
#[test]
fn the_oom_killer_with_nothing_to_kill_panics_the_kernel() {
    let machine = &["--ram", "1G", "--pae"];
    let (code, out, err) = run(&["highmem", "proc", "meminfo", "--ram", "1G", "--pae"]);
    assert_eq!(code, 0, "{err}");
    let total_kb: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("MemTotal");
    let size = total_kb / 1024 - 1;
    let (code, out, err) = shmwork(size, 1, machine, true);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("Kernel panic - not syncing: System is deadlocked on memory"),
        "{err}"
    );
    let log = common::dump(&out, "dmesg").expect("the console");
    let report = log.find("shmwork invoked oom-killer").expect("the report");
    let none = log
        .find("Out of memory and no killable processes...")
        .expect("none to kill");
    let panic = log.find("Kernel panic - not syncing: System is deadlocked on memory");
    assert!(report < none && panic.is_some_and(|p| p > none), "{log}");
    assert!(!log.contains("Killed process"), "{log}");
    assert!(!out.contains("SHMWORK populated"));
}

/// A scenario's `shmwork` step whose program fails says so in its summary line, with the
/// program's own lines under it, and the scenario goes on to its report.
#[test]
fn a_scenario_step_reports_the_programs_failure() {
    let path = std::env::temp_dir().join(format!("shmwork-edge-{}.toml", std::process::id()));
    let toml = "description = \"a segment no gap holds\"\n\n[machine]\nram = \"8G\"\npae = true\n\
                runtime = false\n\n[[step]]\nop = \"shmwork\"\nsize = \"3000M\"\nchildren = 2\n\
                touch = \"r\"\n\n[report]\nproc = [\"meminfo\"]\n";
    std::fs::write(&path, toml).expect("temp scenario");
    let (code, out, err) = run(&["highmem", "run", path.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "] shmwork 3000MiB x2 (r): shmat failed: Cannot allocate memory, exit status 1\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("    SHMWORK shmat failed: Cannot allocate memory\n"),
        "{out}"
    );
    assert!(out.contains("=====BEGIN /proc/meminfo====="), "{out}");
}
