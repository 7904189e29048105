//! (module under construction: layout)
