//! Adaptors: resources that wrap another resource and add one thing to it.
//!
//! Each adaptor is generic over its upstream `R: MemoryResource`, so stacks are plain types
//! (`Statistics<Limiting<Pool<SimUpstream>>>`), and works as well over a type-erased upstream
//! (`&dyn MemoryResource`, `Arc<dyn MemoryResource>`). Every adaptor returns its upstream's
//! errors unchanged, and a call it refuses itself changes nothing.
//!
//! | adaptor | adds | RMM counterpart |
//! |---|---|---|
//! | [`Statistics`] | current / peak / total bytes and counts, nested frames | `statistics_resource_adaptor` |
//! | [`Tracking`] (`alloc`) | every outstanding allocation, tags, a leak report | `tracking_resource_adaptor` |
//! | [`Limiting`] | an atomic byte budget | `limiting_resource_adaptor` |
//! | [`Aligned`] (`alloc`) | any power-of-two alignment | `aligned_resource_adaptor` |
//! | [`FailureRetry`] | a callback decides whether to retry after out of memory | `failure_callback_resource_adaptor` |
//! | [`Logging`] | every event to an [`EventSink`] | `logging_resource_adaptor` |
//! | [`CallbackResource`] | user functions as a resource | `callback_memory_resource` |
//! | [`ThreadSafe`] | a lock around a `&mut self` allocator ([`LocalResource`]) | `thread_safe_resource_adaptor` |
//!
//! [`AsUpstream`] goes the other way: any resource as an [`Upstream`](crate::Upstream) for the
//! algorithms.
//!
//! ```
//! use strata_core::adaptors::{Limiting, Statistics, ThreadSafe};
//! use strata_core::{MemoryResource, SimUpstream, StreamKey};
//! use std::sync::Arc;
//!
//! let base: Arc<dyn MemoryResource> = Arc::new(ThreadSafe::new(SimUpstream::new(1 << 30)));
//! let r = Statistics::new(Limiting::new(base, 1 << 20));
//! let a = r.allocate(4096, 256, StreamKey::DEFAULT)?;
//! assert_eq!(r.bytes().value, 4096);
//! assert_eq!(r.upstream().allocated_bytes(), 4096);
//! r.deallocate(a, 4096, 256, StreamKey::DEFAULT)?;
//! # Ok::<(), strata_core::Error>(())
//! ```

#[cfg(feature = "alloc")]
mod aligned;
mod callback;
mod failure_retry;
mod limiting;
mod logging;
mod statistics;
mod thread_safe;
#[cfg(feature = "alloc")]
mod tracking;

#[cfg(feature = "alloc")]
pub use aligned::Aligned;
pub use callback::CallbackResource;
pub use failure_retry::FailureRetry;
pub use limiting::Limiting;
#[cfg(feature = "alloc")]
pub use logging::VecSink;
pub use logging::{Action, Event, EventSink, Logging};
pub use statistics::{Counter, Statistics, Stats};
pub use thread_safe::{AsUpstream, LocalResource, ThreadSafe, UpstreamResource};
#[cfg(feature = "alloc")]
pub use tracking::{Allocation, LeakReport, Tracking};
