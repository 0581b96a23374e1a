//! # strata-driver
//!
//! strata's CUDA driver backend: it binds the `no_std` core ([`strata_core`]) to the raw CUDA
//! driver API, loaded at run time (a machine without CUDA builds and runs it, and gets
//! [`DriverError::NoDriver`] instead of a panic).
//!
//! Layers, bottom up, as in cudarc:
//!
//! - [`sys`]: cudarc's raw `driver::sys` bindings (CUDA 13.0 headers, dynamic loading);
//! - a checked layer (private): one function per driver call, each turning the `CUresult` into
//!   a [`DriverError::Call`] that names the call; [`DriverError`] converts into the core's
//!   [`strata_core::Error`] (`Backend { call, code }`, `OutOfMemory { .. }`, ...);
//! - safe types: [`driver`] (loading), [`Device`], [`Stream`], [`Event`], [`EventOrder`] (the
//!   core's [`StreamOrder`](strata_core::StreamOrder) with events), the upstreams and resources
//!   [`DeviceMemory`], [`Async`], [`AsyncView`], [`Managed`] (with [`advise`] and
//!   [`prefetch`]), [`Prefetch`], [`PinnedHost`], the containers [`DeviceBuffer`],
//!   [`DeviceVec`], [`DeviceScalar`], and per-device defaults ([`default_resource`]);
//! - the core's resources and adaptors over these upstreams: they are generic, and
//!   [`stream_ordered_pool`] and [`stream_ordered_arena`] put the core's stream-ordered pool
//!   and arena on a device (events for cross-stream reuse, streams retired when they go away).
//!
//! Every call runs in the primary context of its resource's (or stream's) device, made current
//! for the call and restored after, so several GPUs can be used from one thread. A
//! [`StreamKey`](strata_core::StreamKey) given to a resource must be a live [`Stream`]'s key
//! (or 0, the legacy default stream); any other key is
//! [`Error::UnknownStream`](strata_core::Error::UnknownStream), never a driver fault.
//!
//! ```
//! use strata_driver::{Async, Device, DeviceVec, DriverError, Stream};
//!
//! fn run() -> Result<(), DriverError> {
//!     let dev = Device::get(0)?;
//!     let mr = Async::new(&dev)?;
//!     let s = Stream::new(&dev)?;
//!     let v = DeviceVec::from_slice(&[1u32, 2, 3], &s, &mr)?;
//!     assert_eq!(v.to_vec()?, [1, 2, 3]);
//!     Ok(())
//! }
//! match run() {
//!     Err(DriverError::NoDriver | DriverError::NoDevice) => println!("no GPU here"),
//!     other => other.expect("GPU run"),
//! }
//! ```
#![warn(missing_docs, missing_debug_implementations)]

/// cudarc's raw driver bindings (`cudarc::driver::sys`), loaded at run time.
///
/// Calling these directly before [`driver`] succeeded panics (cudarc's behaviour when the
/// library or a symbol is missing); the safe types of this crate never do.
///
/// ```
/// use strata_driver::sys::CUresult;
/// assert_eq!(CUresult::CUDA_ERROR_OUT_OF_MEMORY as u32, 2);
/// ```
pub use cudarc::driver::sys;

mod checked;
mod containers;
mod defaults;
mod device;
mod error;
mod live;
mod loader;
mod memory;
mod ordered;
mod pool;
mod stream;

pub use containers::{DeviceBuffer, DevicePod, DeviceScalar, DeviceVec};
pub use defaults::{default_resource, set_default_resource};
pub use device::{Device, MemoryInfo};
pub use error::DriverError;
pub use loader::{Driver, MIN_DRIVER_VERSION, driver, driver_library_present};
pub use memory::{Advice, DeviceMemory, Location, Managed, PinnedHost, Prefetch, advise, prefetch};
pub use ordered::{stream_ordered_arena, stream_ordered_pool};
pub use pool::{Async, AsyncOptions, AsyncView, IpcHandle};
pub use stream::{Event, EventOrder, RetireStream, Stream, notify_on_stream_drop};
