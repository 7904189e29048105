//! (module under construction: fixmap)
