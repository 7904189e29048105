//! (module under construction: machine)
