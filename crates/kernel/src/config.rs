//! (module under construction: config)
