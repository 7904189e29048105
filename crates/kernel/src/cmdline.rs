//! (module under construction: cmdline)
