//! (module under construction: mmzone)
