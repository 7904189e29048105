//! (module under construction: cpu)
