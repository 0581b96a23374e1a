//! # strata
//!
//! RMM-class memory resources for Rust: the `no_std` allocation core ([`strata_core`], re-exported
//! here at the root) and, with the `driver` feature, the CUDA driver backend ([`driver`]).
//!
//! ```
//! use strata::{SimUpstream, Upstream};
//! let mut device = SimUpstream::<64>::with_slots(1 << 30);
//! let chunk = device.allocate(1 << 20, 256)?;
//! device.deallocate(chunk)?;
//! # Ok::<(), strata::Error>(())
//! ```
#![warn(missing_docs)]

pub use strata_core::*;

/// The CUDA driver backend (feature `driver`).
#[cfg(feature = "driver")]
pub use strata_driver as driver;

#[cfg(doctest)]
mod guide;
pub mod logging;
pub mod profile;
pub mod replay;
pub mod trace;
