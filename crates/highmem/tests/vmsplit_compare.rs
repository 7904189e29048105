//! `highmem compare SCENARIO --vmsplit 3G,2G,1G`: the shipped database scenario (1 GiB, PAE,
//! user processes sharing a segment) on three splits. On 3G the top 128 MiB of RAM is
//! HighMem and the HIGHPTE kernel reaches user PTE pages through kmap_local; on 2G and 1G
//! all of RAM is below MAXMEM, so there is no HighMem and no PTE kmap, and the workload
//! itself — the same binary below each split's TASK_SIZE — takes the same faults.

use std::path::PathBuf;

fn compare_json(args: &[&str]) -> serde_json::Value {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = highmem::cli::run(args.iter().copied(), &mut out, &mut err);
    assert_eq!(code, 0, "{args:?}: {}", String::from_utf8_lossy(&err));
    serde_json::from_slice(&out).expect("JSON")
}

fn field(row: &serde_json::Value, name: &str) -> u64 {
    row["result"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {row}"))
}

#[test]
fn database_on_three_splits() {
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/database.toml");
    let scenario = scenario.display().to_string();
    let rows = compare_json(&[
        "highmem",
        "compare",
        &scenario,
        "--vmsplit",
        "3G,2G,1G",
        "--json",
    ]);
    let rows = rows.as_array().expect("rows");
    let splits: Vec<&str> = rows.iter().filter_map(|r| r["vmsplit"].as_str()).collect();
    assert_eq!(splits, ["3G", "2G", "1G"]);
    for r in rows {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["result"]["stopped"], "completed", "{r}");
        assert_eq!(field(r, "children_done"), 60, "{r}");
        assert_eq!(
            field(r, "mem_free_kb"),
            field(r, "low_free_kb") + field(r, "high_free_kb"),
            "{r}"
        );
        assert_eq!(
            field(r, "page_faults"),
            field(&rows[0], "page_faults"),
            "{r}"
        );
    }
    let (g3, g2, g1) = (&rows[0], &rows[1], &rows[2]);
    assert!(field(g3, "high_free_kb") > 0, "{g3}");
    assert!(field(g3, "pte_kmaps") > 0, "{g3}");
    for r in [g2, g1] {
        assert_eq!(field(r, "high_free_kb"), 0, "{r}");
        assert_eq!(field(r, "pte_kmaps"), 0, "{r}");
    }
}

/// The 64-bit kernel beside PAE: no split (the column says `-`), the same program's faults,
/// and no PTE page kmapped or INVLPG'd, since every page is in its direct map.
#[test]
fn x86_64_has_no_split_and_maps_no_page_table() {
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/database.toml");
    let path = scenario.to_str().expect("utf-8 path");
    let v = compare_json(&[
        "highmem",
        "compare",
        path,
        "--variants",
        "64GB-highpte,x86_64",
        "--json",
    ]);
    let rows = v.as_array().expect("rows");
    let (pae, x64) = (&rows[0], &rows[1]);
    assert_eq!(x64["vmsplit"], "-", "{x64}");
    assert!(x64["error"].is_null(), "{x64}");
    assert_eq!(field(x64, "page_faults"), field(pae, "page_faults"));
    assert_eq!(field(x64, "pte_kmaps"), 0);
    assert!(field(pae, "pte_kmaps") > 0, "{pae}");
}
