//! (module under construction: tlb)
