//! (module under construction: mmu)
