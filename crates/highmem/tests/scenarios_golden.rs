//! Every scenario shipped in `scenarios/` runs, and its text output is pinned: the golden
//! files in `tests/golden/` (regenerate with `UPDATE_GOLDEN=1 cargo test --release -p
//! highmem --test scenarios_golden` and review the diff).

use std::path::PathBuf;

#[test]
fn shipped_scenarios_run_and_match_their_golden_output() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("scenarios"))
        .expect("scenarios/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "scenarios missing");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for f in files {
        let stem = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        let rel = format!("scenarios/{stem}.toml");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let arg = f.display().to_string();
        let code = highmem::cli::run(["highmem", "run", arg.as_str()], &mut out, &mut err);
        let text = String::from_utf8(out).expect("utf-8").replace(&arg, &rel);
        assert_eq!(code, 0, "{rel}: {}", String::from_utf8_lossy(&err));
        let golden =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{stem}.out"));
        if update {
            std::fs::write(&golden, &text).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != text {
            failures.push(format!("{rel}: output differs from {}", golden.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
