//! Malformed scenarios: each is refused before anything runs, with exit code 2 and an error
//! naming file, line and column, the offending line with a caret, and a hint.

fn run_scenario(text: &str) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("highmem-scn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("s{:x}.toml", fxhash(text)));
    std::fs::write(&path, text).expect("write scenario");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let p = path.display().to_string();
    let code = highmem::cli::run(["highmem", "run", p.as_str()], &mut out, &mut err);
    let _ = std::fs::remove_file(&path);
    (
        code,
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8").replace(&p, "S.toml"),
    )
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

const MACHINE: &str = "[machine]\nram = \"1G\"\npae = true\nruntime = false\n";

/// Refused with exit 2, nothing on stdout, the error at `line:col` containing `words`,
/// and a hint.
fn refused(text: &str, line_col: &str, words: &str) {
    let (code, out, err) = run_scenario(text);
    assert_eq!(code, 2, "{text}\n{err}");
    assert!(out.is_empty(), "something ran:\n{out}");
    assert!(
        err.starts_with(&format!("highmem: error: S.toml:{line_col}: ")),
        "expected S.toml:{line_col}:\n{err}"
    );
    assert!(err.contains(words), "expected '{words}':\n{err}");
    assert!(err.contains(" | "), "no source line:\n{err}");
    assert!(err.contains('^'), "no caret:\n{err}");
    assert!(err.contains("= hint: "), "no hint:\n{err}");
}

fn with_steps(steps: &str) -> String {
    format!("{MACHINE}\n{steps}")
}

#[test]
fn unknown_key() {
    refused("[machine]\nrma = \"1G\"\n", "2:1", "unknown field `rma`");
}

#[test]
fn unknown_step_kind() {
    refused(
        &with_steps("[[step]]\nop = \"kmaloc\"\nname = \"a\"\n"),
        "7:6",
        "unknown variant `kmaloc`",
    );
}

#[test]
fn wrong_type() {
    refused(
        &with_steps("[[step]]\nop = \"kmalloc\"\nname = \"a\"\nsize = 64\ncount = \"many\"\n"),
        "6:1",
        "invalid type",
    );
}

#[test]
fn negative_size() {
    refused(
        &with_steps("[[step]]\nop = \"kmalloc\"\nname = \"a\"\nsize = -4\n"),
        "6:1",
        "a size cannot be negative",
    );
}

#[test]
fn missing_field() {
    refused(
        &with_steps("[[step]]\nop = \"kmalloc\"\nname = \"a\"\n"),
        "6:1",
        "missing field `size`",
    );
}

#[test]
fn size_beyond_the_machine() {
    refused(
        &with_steps("[[step]]\nop = \"alloc_pages\"\nname = \"a\"\norder = 10\ncount = 1000\n"),
        "6:1",
        "on a machine with",
    );
    refused(
        &with_steps("[[step]]\nop = \"vmalloc\"\nname = \"a\"\nsize = \"600M\"\n"),
        "6:1",
        "does not fit",
    );
    refused(
        &with_steps("[[step]]\nop = \"alloc_pages\"\nname = \"a\"\norder = 11\n"),
        "6:1",
        "above MAX_ORDER",
    );
}

#[test]
fn step_before_what_it_frees_exists() {
    refused(
        &with_steps("[[step]]\nop = \"free\"\nname = \"buf\"\n"),
        "6:1",
        "`buf` holds nothing here",
    );
    // A repeat that frees what only its first pass allocated.
    refused(
        &with_steps("[[step]]\nop = \"alloc_pages\"\nname = \"x\"\n\n[[step]]\nop = \"repeat\"\ntimes = 3\n[[step.step]]\nop = \"free\"\nname = \"x\"\n"),
        "10:1",
        "`x` holds nothing here",
    );
}

#[test]
fn unknown_preset() {
    refused(
        "[machine]\nram = \"1G\"\nkernel = \"vanilla\"\n",
        "3:10",
        "unknown kernel preset `vanilla`",
    );
}

#[test]
fn impossible_machine() {
    refused(
        "[machine]\nram = \"65G\"\npae = true\n",
        "2:7",
        "at most 64 GiB",
    );
}

#[test]
fn unknown_gfp_cpu_sysctl_and_proc_file() {
    refused(
        &with_steps("[[step]]\nop = \"alloc_pages\"\nname = \"a\"\ngfp = \"GFP_FOO\"\n"),
        "6:1",
        "unknown GFP mask `GFP_FOO`",
    );
    refused(
        &with_steps("[[step]]\nop = \"kmalloc\"\nname = \"a\"\nsize = 8\ncpu = 3\n"),
        "6:1",
        "cpu 3: the machine has 1 CPU(s)",
    );
    refused(
        &with_steps("[[step]]\nop = \"sysctl\"\nname = \"swappiness\"\nvalue = 1\n"),
        "6:1",
        "unknown sysctl `swappiness`",
    );
    refused(
        &format!("{MACHINE}[report]\nproc = [\"slabinfo\", \"interrupts\"]\n"),
        "6:21",
        "no /proc/interrupts",
    );
}

#[test]
fn a_name_reused_for_another_kind() {
    refused(
        &with_steps("[[step]]\nop = \"kmalloc\"\nname = \"a\"\nsize = 8\n\n[[step]]\nop = \"vmalloc\"\nname = \"a\"\nsize = 8192\n"),
        "11:1",
        "`a` already holds Kmalloc objects",
    );
}

#[test]
fn toml_syntax() {
    refused("[machine\nram = \"1G\"\n", "1:9", "");
}

#[test]
fn unknown_design_and_a_variant_the_design_lacks() {
    refused(
        "[machine]\nram = \"1G\"\ndesign = \"linux-2.6\"\n",
        "3:10",
        "unknown design",
    );
    refused(
        "[machine]\nram = \"4G\"\ndesign = \"pte-highmem-2.4\"\nvariant = \"64GB\"\n",
        "4:11",
        "variant 64GB does not exist in design pte-highmem-2.4",
    );
}

const SPAWN: &str = "[[step]]\nop = \"spawn\"\nname = \"p\"\n\n";

#[test]
fn unknown_process() {
    refused(
        &with_steps("[[step]]\nop = \"fork\"\nname = \"c\"\nparent = \"p\"\n"),
        "6:1",
        "no process `p` here",
    );
    refused(
        &with_steps(&format!("{SPAWN}[[step]]\nop = \"exit\"\nprocess = \"p\"\n\n[[step]]\nop = \"mmap\"\nname = \"m\"\nprocess = \"p\"\nsize = 4096\n")),
        "14:1",
        "no process `p` here",
    );
}

#[test]
fn a_step_before_the_segment_exists() {
    refused(
        &with_steps(&format!(
            "{SPAWN}[[step]]\nop = \"shmat\"\nname = \"a\"\nprocess = \"p\"\nsegment = \"db\"\n"
        )),
        "10:1",
        "no segment `db` here",
    );
    refused(
        &with_steps("[[step]]\nop = \"shm_rmid\"\nsegment = \"db\"\n"),
        "6:1",
        "no segment `db` here",
    );
}

#[test]
fn a_mapping_that_is_not_there_or_of_another_kind() {
    refused(
        &with_steps("[[step]]\nop = \"touch\"\nmapping = \"buf\"\n"),
        "6:1",
        "no mapping `buf` here",
    );
    refused(
        &with_steps(&format!("{SPAWN}[[step]]\nop = \"mmap\"\nname = \"m\"\nprocess = \"p\"\nsize = 4096\n\n[[step]]\nop = \"shmdt\"\nmapping = \"m\"\n")),
        "16:1",
        "`m` is an anonymous mapping",
    );
    refused(
        &with_steps(&format!("{SPAWN}[[step]]\nop = \"mmap\"\nname = \"m\"\nprocess = \"p\"\nsize = 4096\n\n[[step]]\nop = \"touch\"\nmapping = \"m\"\nhow = \"poke\"\n")),
        "16:1",
        "unknown touch `poke`",
    );
}

#[test]
fn a_segment_or_workload_beyond_the_machine() {
    refused(
        &with_steps("[[step]]\nop = \"shmget\"\nname = \"db\"\nsize = \"2G\"\n"),
        "6:1",
        "on a machine with 1024 MiB of RAM",
    );
    refused(
        &with_steps("[[step]]\nop = \"shmwork\"\nsize = \"4G\"\nchildren = 10\n"),
        "6:1",
        "on a machine with",
    );
    refused(
        &with_steps("[[step]]\nop = \"kmap_tasks\"\ntasks = 0\npages = 10\n"),
        "6:1",
        "0 tasks",
    );
}

#[test]
fn a_process_name_used_twice() {
    refused(
        &with_steps(&format!("{SPAWN}{SPAWN}")),
        "10:1",
        "process `p` exists already",
    );
}

#[test]
fn unknown_or_impossible_vmsplit() {
    refused(
        "[machine]\nram = \"1G\"\nvmsplit = \"4G\"\n",
        "3:11",
        "unknown vmsplit `4G`",
    );
    refused(
        "[machine]\nram = \"1G\"\npae = true\nvmsplit = \"3G_OPT\"\n",
        "4:11",
        "depend on !X86_PAE",
    );
}

/// The 64-bit kernel runs scenarios too; its split is not a choice, and a 32-bit program gets
/// IA32_PAGE_OFFSET: a 3.5 GiB mapping fits there, not on the 3G split.
#[test]
fn x86_64_scenarios_run_with_its_own_split() {
    refused(
        "[machine]\nram = \"1G\"\nvariant = \"x86_64\"\nvmsplit = \"3G\"\n",
        "4:11",
        "vmsplit is a 32-bit kernel's choice",
    );
    let mmap = |machine: &str| {
        format!(
            "[machine]\nram = \"1G\"\n{machine}\n\n{SPAWN}[[step]]\nop = \"mmap\"\nname = \"m\"\nprocess = \"p\"\nsize = \"3500M\"\n"
        )
    };
    refused(
        &mmap("vmsplit = \"3G\""),
        "9:1",
        "MiB of user address space",
    );
    let (code, out, err) = run_scenario(&mmap("variant = \"x86_64\""));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4-level paging"), "{out}");
}

#[test]
fn unknown_tlb_geometry() {
    refused(
        "[machine]\nram = \"1G\"\ntlb = \"huge\"\n",
        "3:7",
        "unknown tlb `huge`",
    );
    let (code, _, err) = run_scenario("[machine]\nram = \"1G\"\ntlb = \"debug\"\n");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn user_mappings_are_bounded_by_the_splits_task_size() {
    // On the 1G split TASK_SIZE is 1 GiB: a 1 GiB mapping cannot fit (on 3G it would).
    let mmap = |split: &str| {
        format!(
            "[machine]\nram = \"1G\"\nvmsplit = \"{split}\"\n\n{SPAWN}[[step]]\nop = \"mmap\"\nname = \"m\"\nprocess = \"p\"\nsize = \"1G\"\n"
        )
    };
    refused(&mmap("1G"), "9:1", "1024 MiB of user address space");
    let (code, _, err) = run_scenario(&mmap("3G"));
    assert_eq!(code, 0, "{err}");
}
