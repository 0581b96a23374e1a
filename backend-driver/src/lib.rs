//! # strata-driver
//!
//! strata's CUDA driver backend (work in progress; see the issues).
