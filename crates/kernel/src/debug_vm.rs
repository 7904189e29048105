//! (module under construction: debug_vm)
