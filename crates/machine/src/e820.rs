//! (module under construction: e820)
