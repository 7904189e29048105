//! (module under construction: page)
