//! (module under construction: gfp)
