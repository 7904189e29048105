//! The /proc dumps of a run as `kernel::procfs` snapshots.
//!
//! `kernel::procfs` formats snapshots exactly as Linux prints the files, so turning a real
//! dump back into a snapshot and formatting it again must give the dump byte for byte: that
//! proves the formatter against the real kernel independently of the model. The conversion
//! undoes what the kernel does when printing (watermarks include the boost, THP counters are
//! shown in base pages, pgpgin/pgpgout in kB), and meminfo, which shows derived figures,
//! takes its other inputs from the nearest zoneinfo, kinspect and sysctl dumps.

use super::error::ReferenceError;
use super::{RefRun, Zoneinfo};
use kernel::procfs::meminfo::DEFAULT_OVERCOMMIT_RATIO;
use kernel::procfs::{
    self as kp, HugetlbSnapshot, MeminfoSnapshot, NodeStatItem, NumaStatItem, PagesetSnapshot,
    VmEventItem, VmstatSnapshot, ZoneStatItem, MAX_NR_ZONES, MAX_ORDER, MAX_RECLAIM_RETRIES,
    MAX_ZONE_NUMBERS, MIGRATETYPE_NAMES, MIGRATE_TYPES,
};

impl RefRun {
    /// zoneinfo dump `i` as the snapshot `kernel::procfs::format_zoneinfo` prints.
    pub fn zoneinfo_snapshot(&self, i: usize) -> Result<kp::ZoneinfoSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .zoneinfo
            .get(i)
            .ok_or_else(|| src.err(0, format!("no zoneinfo dump #{i}")))?;
        let hpage = self.kernel.hpage_pmd_nr();
        let config = self.kernel.vmstat_config();
        let mut nodes: Vec<kp::ZoneinfoNode> = Vec::new();
        for z in &dump.zones {
            if nodes.last().is_none_or(|n| n.node_id != z.node) {
                nodes.push(kp::ZoneinfoNode {
                    node_id: z.node,
                    ..Default::default()
                });
            }
            let Some(node) = nodes.last_mut() else {
                continue;
            };
            for (name, value) in &z.node_stats {
                let item = NodeStatItem::from_name(name)
                    .filter(|&i| config.has_node_item(i))
                    .ok_or_else(|| src.err(z.line, format!("unknown node counter {name:?}")))?;
                node.node_stats[item] = if item.print_in_thp() {
                    value * hpage
                } else {
                    *value
                };
            }
            if z.node_unreclaimable == Some(true) {
                node.kswapd_failures = MAX_RECLAIM_RETRIES;
            }
            let base = |printed: u64, what: &str| {
                printed
                    .checked_sub(z.boost)
                    .ok_or_else(|| src.err(z.line, format!("{what} below boost")))
            };
            // One entry per zone number: MAX_NR_ZONES of i386 (4), or of x86_64 (5, with
            // ZONE_DEVICE).
            if !(MAX_NR_ZONES..=MAX_ZONE_NUMBERS).contains(&z.protection.len()) {
                return Err(src.err(
                    z.line,
                    format!(
                        "protection has {} values, expected {MAX_NR_ZONES} or {MAX_ZONE_NUMBERS}",
                        z.protection.len()
                    ),
                ));
            }
            let lowmem_reserve = z.protection.clone();
            let mut zone = kp::ZoneinfoZone {
                name: z.name.clone(),
                watermark_min: base(z.min, "min")?,
                watermark_low: base(z.low, "low")?,
                watermark_high: base(z.high, "high")?,
                watermark_boost: z.boost,
                spanned_pages: z.spanned,
                present_pages: z.present,
                managed_pages: z.managed,
                cma_pages: z.cma,
                lowmem_reserve,
                zone_start_pfn: z.start_pfn.unwrap_or(0),
                ..Default::default()
            };
            for (name, value) in &z.stats {
                if let Some(item) = ZoneStatItem::from_name(name) {
                    zone.vm_stat[item] = *value;
                } else if let Some(item) = NumaStatItem::from_name(name).filter(|_| config.numa) {
                    zone.numa_events[item] = *value;
                } else {
                    return Err(src.err(z.line, format!("unknown zone counter {name:?}")));
                }
            }
            if z.populated() && zone.vm_stat[ZoneStatItem::NrFreePages] != z.free {
                return Err(src.err(z.line, "pages free differs from nr_free_pages"));
            }
            zone.vm_stat[ZoneStatItem::NrFreePages] = z.free;
            for p in &z.pagesets {
                let stat_threshold = p.stat_threshold.ok_or_else(|| {
                    src.err(z.line, format!("cpu {} has no vm stats threshold", p.cpu))
                })?;
                zone.pagesets.push(PagesetSnapshot {
                    cpu: p.cpu,
                    count: p.count,
                    high: p.high,
                    batch: p.batch,
                    stat_threshold,
                });
            }
            node.zones.push(zone);
        }
        Ok(kp::ZoneinfoSnapshot {
            config,
            hpage_pmd_nr: hpage,
            nodes,
        })
    }

    /// buddyinfo dump `i` as a snapshot.
    pub fn buddyinfo_snapshot(&self, i: usize) -> Result<kp::BuddyinfoSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .buddyinfo
            .get(i)
            .ok_or_else(|| src.err(0, format!("no buddyinfo dump #{i}")))?;
        let mut nodes: Vec<kp::BuddyinfoNode> = Vec::new();
        for z in &dump.zones {
            if nodes.last().is_none_or(|n| n.node_id != z.node) {
                nodes.push(kp::BuddyinfoNode {
                    node_id: z.node,
                    zones: Vec::new(),
                });
            }
            let nr_free = z.nr_free.as_slice().try_into().map_err(|_| {
                src.err(
                    z.line,
                    format!("{} orders, expected {MAX_ORDER}", z.nr_free.len()),
                )
            })?;
            if let Some(node) = nodes.last_mut() {
                node.zones.push(kp::BuddyinfoZone {
                    name: z.name.clone(),
                    populated: true,
                    nr_free,
                });
            }
        }
        Ok(kp::BuddyinfoSnapshot { nodes })
    }

    /// pagetypeinfo dump `i` as a snapshot.
    pub fn pagetypeinfo_snapshot(
        &self,
        i: usize,
    ) -> Result<kp::PagetypeinfoSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .pagetypeinfo
            .get(i)
            .ok_or_else(|| src.err(0, format!("no pagetypeinfo dump #{i}")))?;
        if dump.block_types != MIGRATETYPE_NAMES {
            return Err(src.err(
                dump.begin_line,
                format!("block table types {:?}", dump.block_types),
            ));
        }
        if dump.pages_per_block != 1u64 << dump.pageblock_order {
            return Err(src.err(dump.begin_line, "pages per block is not 1 << order"));
        }
        let mut nodes: Vec<kp::PagetypeinfoNode> = Vec::new();
        for f in &dump.free {
            if nodes.last().is_none_or(|n| n.node_id != f.node) {
                nodes.push(kp::PagetypeinfoNode {
                    node_id: f.node,
                    has_memory: true,
                    zones: Vec::new(),
                });
            }
            let Some(node) = nodes.last_mut() else {
                continue;
            };
            if node.zones.last().is_none_or(|z| z.name != f.zone) {
                node.zones.push(kp::PagetypeinfoZone {
                    name: f.zone.clone(),
                    populated: true,
                    ..Default::default()
                });
            }
            let Some(zone) = node.zones.last_mut() else {
                continue;
            };
            let mtype = MIGRATETYPE_NAMES
                .iter()
                .position(|m| *m == f.migratetype)
                .ok_or_else(|| {
                    src.err(f.line, format!("unknown migrate type {:?}", f.migratetype))
                })?;
            zone.free_count[mtype] = f.counts.as_slice().try_into().map_err(|_| {
                src.err(
                    f.line,
                    format!("{} orders, expected {MAX_ORDER}", f.counts.len()),
                )
            })?;
        }
        for b in &dump.blocks {
            let zone = nodes
                .iter_mut()
                .filter(|n| n.node_id == b.node)
                .flat_map(|n| n.zones.iter_mut())
                .find(|z| z.name == b.zone)
                .ok_or_else(|| {
                    src.err(
                        b.line,
                        format!("block counts for unlisted zone {:?}", b.zone),
                    )
                })?;
            zone.block_count = b.counts.as_slice().try_into().map_err(|_| {
                src.err(
                    b.line,
                    format!("{} types, expected {MIGRATE_TYPES}", b.counts.len()),
                )
            })?;
        }
        Ok(kp::PagetypeinfoSnapshot {
            pageblock_order: dump.pageblock_order,
            nodes,
        })
    }

    /// vmstat dump `i` as a snapshot.
    pub fn vmstat_snapshot(&self, i: usize) -> Result<VmstatSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .vmstat
            .get(i)
            .ok_or_else(|| src.err(0, format!("no vmstat dump #{i}")))?;
        let hpage = self.kernel.hpage_pmd_nr();
        let config = self.kernel.vmstat_config();
        let mut s = VmstatSnapshot {
            config,
            hpage_pmd_nr: hpage,
            ..Default::default()
        };
        for (k, (name, value)) in dump.entries.iter().enumerate() {
            let line = dump.begin_line + 1 + k;
            if let Some(item) = ZoneStatItem::from_name(name) {
                s.zone_stats[item] = *value;
            } else if let Some(item) = NumaStatItem::from_name(name).filter(|_| config.numa) {
                s.numa_events[item] = *value;
            } else if let Some(item) =
                NodeStatItem::from_name(name).filter(|&i| config.has_node_item(i))
            {
                s.node_stats[item] = if item.print_in_thp() {
                    value * hpage
                } else {
                    *value
                };
            } else if let Some(item) = config.event_from_name(name) {
                let sectors = matches!(item, VmEventItem::Pgpgin | VmEventItem::Pgpgout);
                s.events[item] = if sectors { value * 2 } else { *value };
            } else {
                match name.as_str() {
                    "nr_dirty_threshold" => s.dirty_threshold = *value,
                    "nr_dirty_background_threshold" => s.dirty_background_threshold = *value,
                    "nr_unstable" if *value == 0 => {}
                    _ => return Err(src.err(line, format!("unknown vmstat counter {name:?}"))),
                }
            }
        }
        Ok(s)
    }

    /// meminfo dump `i` as a snapshot. The figures meminfo derives need more than meminfo:
    /// the low watermarks come from the nearest zoneinfo dump, the overcommit ratio from
    /// /proc/sys/vm/overcommit_ratio (the kernel default when not dumped), and
    /// `totalreserve_pages` from kinspect or, without it, from a zoneinfo dump by the kernel's
    /// formula — in both cases one taken in the same reserve epoch as the meminfo dump (see
    /// [`RefRun::reserve_epoch`]).
    pub fn meminfo_snapshot(&self, i: usize) -> Result<MeminfoSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .meminfo
            .get(i)
            .ok_or_else(|| src.err(0, format!("no meminfo dump #{i}")))?;
        let at = dump.begin_line;
        let zi = self
            .nearest_zoneinfo(at)
            .ok_or_else(|| src.err(at, "no zoneinfo dump to take watermarks from"))?;
        let kb = |label: &str| {
            dump.get(label)
                .ok_or_else(|| src.err(at, format!("meminfo lacks {label}")))
        };
        let pages = |label: &str| {
            let v = kb(label)?;
            if v % 4 != 0 {
                return Err(src.err(at, format!("{label} {v} kB is not whole pages")));
            }
            Ok(v / 4)
        };
        let pae = self.kernel.is_pae();
        let (large_label, large_kb) = if pae {
            ("DirectMap2M", 2048)
        } else {
            ("DirectMap4M", 4096)
        };
        let epoch = self.reserve_epoch(at);
        let kinspect_reserve = self
            .kinspect
            .as_ref()
            .filter(|k| self.reserve_epoch(k.begin_line) == epoch)
            .and_then(|k| k.var("totalreserve_pages"));
        let zoneinfo_reserve = self
            .zoneinfo
            .iter()
            .filter(|z| self.reserve_epoch(z.begin_line) == epoch)
            .min_by_key(|z| z.begin_line.abs_diff(at))
            .map(Zoneinfo::totalreserve_pages);
        let totalreserve_pages = kinspect_reserve.or(zoneinfo_reserve).ok_or_else(|| {
            src.err(
                at,
                "no kinspect or zoneinfo dump gives totalreserve_pages at this point",
            )
        })?;
        let overcommit_ratio = match self.sysctl_values("/proc/sys/vm/overcommit_ratio")? {
            Some(v) => v.first().copied().unwrap_or_default().max(0) as u64,
            None => DEFAULT_OVERCOMMIT_RATIO,
        };

        let mut s = MeminfoSnapshot {
            pae,
            no_highmem: false,
            totalram_pages: pages("MemTotal")?,
            totalhigh_pages: pages("HighTotal")?,
            free_highpages: pages("HighFree")?,
            totalreserve_pages,
            low_wmark_pages_sum: zi.low_wmark_sum(),
            buffer_pages: pages("Buffers")?,
            swapcache_pages: pages("SwapCached")?,
            total_swap_pages: pages("SwapTotal")?,
            free_swap_pages: pages("SwapFree")?,
            zswap_pool_total_size: kb("Zswap")? << 10,
            zswap_stored_pages: pages("Zswapped")?,
            committed_as_pages: pages("Committed_AS")?,
            overcommit_ratio,
            overcommit_kbytes: 0,
            vmalloc_total_bytes: kb("VmallocTotal")? << 10,
            vmalloc_nr_pages: pages("VmallocUsed")?,
            pcpu_nr_pages: pages("Percpu")?,
            num_poisoned_pages: pages("HardwareCorrupted")?,
            hugetlb: HugetlbSnapshot {
                nr_huge_pages: kb("HugePages_Total")?,
                free_huge_pages: kb("HugePages_Free")?,
                resv_huge_pages: kb("HugePages_Rsvd")?,
                surplus_huge_pages: kb("HugePages_Surp")?,
                huge_page_size_kb: kb("Hugepagesize")?,
            },
            direct_pages_4k: pages("DirectMap4k")?,
            direct_pages_large: kb(large_label)? / large_kb,
            ..Default::default()
        };
        s.zone_stats[ZoneStatItem::NrFreePages] = pages("MemFree")?;
        s.zone_stats[ZoneStatItem::NrMlock] = pages("Mlocked")?;
        s.zone_stats[ZoneStatItem::NrBounce] = pages("Bounce")?;
        use NodeStatItem as N;
        let node = &mut s.node_stats;
        node[N::NrFilePages] = pages("Cached")? + pages("SwapCached")? + pages("Buffers")?;
        node[N::NrActiveAnon] = pages("Active(anon)")?;
        node[N::NrInactiveAnon] = pages("Inactive(anon)")?;
        node[N::NrActiveFile] = pages("Active(file)")?;
        node[N::NrInactiveFile] = pages("Inactive(file)")?;
        node[N::NrUnevictable] = pages("Unevictable")?;
        node[N::NrFileDirty] = pages("Dirty")?;
        node[N::NrWriteback] = pages("Writeback")?;
        node[N::NrAnonMapped] = pages("AnonPages")?;
        node[N::NrFileMapped] = pages("Mapped")?;
        node[N::NrShmem] = pages("Shmem")?;
        node[N::NrSlabReclaimableB] = pages("SReclaimable")?;
        node[N::NrSlabUnreclaimableB] = pages("SUnreclaim")?;
        node[N::NrKernelMiscReclaimable] = pages("KReclaimable")?
            .checked_sub(pages("SReclaimable")?)
            .ok_or_else(|| src.err(at, "KReclaimable below SReclaimable"))?;
        node[N::NrKernelStackKb] = kb("KernelStack")?;
        node[N::NrPagetable] = pages("PageTables")?;
        node[N::NrSecondaryPagetable] = pages("SecPageTables")?;
        node[N::NrWritebackTemp] = pages("WritebackTmp")?;
        node[N::NrAnonThps] = pages("AnonHugePages")?;
        node[N::NrShmemThps] = pages("ShmemHugePages")?;
        node[N::NrShmemPmdmapped] = pages("ShmemPmdMapped")?;
        node[N::NrFileThps] = pages("FileHugePages")?;
        node[N::NrFilePmdmapped] = pages("FilePmdMapped")?;
        Ok(s)
    }
}
