//! # strata-core
//!
//! The `no_std` heart of strata: memory-allocation algorithms over *abstract address ranges*.
//! Nothing here reads or writes the memory it manages; every algorithm keeps its metadata
//! beside the memory, in a [`store`] that is either fixed-capacity (no heap at all, usable in a
//! `static`) or growable (the `alloc` feature).
//!
//! Layers, bottom up:
//!
//! - [`Range`], alignment helpers and the one [`Error`] type;
//! - [`store`]: metadata slots, fixed or growable;
//! - [`Upstream`]: where big ranges come from ([`SimUpstream`] simulates an address space);
//! - algorithms: single-threaded structs with `&mut self` methods;
//! - resources: `Send + Sync` types with `&self` methods ([`MemoryResource`]) built on the
//!   algorithms through the crate's `sync` shim, so that the very code loom checks is the code
//!   that runs.
//!
//! ```
//! use strata_core::{Range, SimUpstream, Upstream};
//!
//! let mut sim = SimUpstream::new(1 << 20);
//! let chunk = sim.allocate(4096, 256)?;
//! assert_eq!(chunk.len, 4096);
//! assert_eq!(chunk.start % 256, 0);
//! sim.deallocate(chunk)?;
//! # Ok::<(), strata_core::Error>(())
//! ```
#![cfg_attr(not(loom), no_std)]
#![warn(missing_docs, missing_debug_implementations)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod adaptors;
pub mod algo;
mod error;
mod range;
mod resource;
pub mod resources;
#[cfg(feature = "alloc")]
pub mod sim_stream;
pub mod store;
pub mod sync;
mod upstream;

pub use error::Error;
pub use range::{DEFAULT_ALIGNMENT, Range, align_down, align_up, check_alignment};
pub use resource::{MemoryResource, StreamKey, StreamOrder};
pub use upstream::{SimUpstream, Upstream};
