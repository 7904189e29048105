//! `setup_per_cpu_areas()`: the embedded first chunk (mm/percpu.c, arch/x86/kernel/setup_percpu.c).
//!
//! One unit per possible CPU from memblock, then the first chunk's metadata: group and unit
//! maps, the slot lists, and allocation/boundary bitmaps and block metadata for the dynamic
//! region only. Two scratch pages (the allocation info and the `areas` array) are taken
//! first and freed at the end, leaving a hole that later early allocations fill.

use super::profile::BootProfile;
use super::resources::SMP_CACHE_BYTES;
use super::BootError;
use crate::config::KernelConfig;
use crate::memblock::Memblock;
use crate::printk::Printk;
use machine::PAGE_SIZE;

/// `setup_per_cpu_areas()`; returns the pages the units take.
pub(super) fn setup_per_cpu_areas(
    memblock: &mut Memblock,
    log: &mut Printk,
    cfg: &KernelConfig,
    profile: &BootProfile,
    cpus: u32,
) -> Result<u64, BootError> {
    let unit = profile.percpu_unit();
    log.info(format!(
        "setup_percpu: NR_CPUS:{} nr_cpumask_bits:{} nr_cpu_ids:{} nr_node_ids:1",
        cfg.nr_cpus, cpus, cpus
    ));
    let failed = |e| BootError::Panic(format!("Failed to initialize percpu areas: {e}"));
    // pcpu_build_alloc_info() takes a page for the allocation info and
    // pcpu_embed_first_chunk() a page for its `areas` array; both are freed once the first
    // chunk is set up, leaving a two-page hole above the units that later early
    // allocations (the CPU entry area's page tables) fill.
    let mut scratch = Vec::new();
    for what in ["pcpu alloc info", "pcpu areas array"] {
        let p = memblock
            .alloc_range(PAGE_SIZE, PAGE_SIZE, 0, u64::MAX, what)
            .map_err(failed)?;
        scratch.push(p.as_u64());
    }
    let ncpu = u64::from(cpus);
    memblock
        .alloc_range(unit * ncpu, PAGE_SIZE, 0, u64::MAX, "per-CPU areas")
        .map_err(failed)?;
    log.info(format!(
        "percpu: Embedded {} pages/cpu s{} r0 d{} u{}",
        unit / PAGE_SIZE,
        profile.percpu_static,
        unit - profile.percpu_static,
        unit
    ));
    pcpu_setup_first_chunk(memblock, profile, ncpu)?;
    for p in scratch {
        memblock.free(p, PAGE_SIZE);
    }
    Ok(unit / PAGE_SIZE * ncpu)
}

/// `pcpu_setup_first_chunk()`: group/unit maps, slot lists, the first chunk with its
/// allocation and boundary bitmaps (one bit per 4 bytes) and per-page block metadata.
/// `pcpu_alloc_first_chunk()` maps only the dynamic part: from the page holding the end
/// of the static data to the end of the unit.
fn pcpu_setup_first_chunk(
    memblock: &mut Memblock,
    profile: &BootProfile,
    ncpu: u64,
) -> Result<(), BootError> {
    let unit = profile.percpu_unit();
    let dyn_size = unit - profile.percpu_static;
    let start_offset = profile.percpu_static % PAGE_SIZE;
    let region_size = (start_offset + dyn_size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let region_bits = region_size / 4;
    // pcpu_nr_slots: the unit size's slot, then the sidelined, free and to-depopulate
    // slots; one list_head each.
    let unit_slot = (64 - unit.leading_zeros() as u64)
        .saturating_sub(5 - 2)
        .max(1);
    let nr_slots = unit_slot + 4;
    for size in [
        4,
        4,
        4 * ncpu,
        4 * ncpu,
        8 * nr_slots,
        96,
        region_bits.div_ceil(32) * 4,
        (region_bits + 1).div_ceil(32) * 4,
        (region_size / PAGE_SIZE) * 28,
    ] {
        memblock
            .alloc_range(size, SMP_CACHE_BYTES, 0, u64::MAX, "per-CPU metadata")
            .map_err(|e| BootError::Panic(format!("Failed to allocate percpu metadata: {e}")))?;
    }
    Ok(())
}
