//! Resources: the algorithms made thread-safe (`Send + Sync`, `&self`), each a
//! [`MemoryResource`](crate::MemoryResource).
//!
//! They wrap the algorithms of [`algo`](crate::algo) in the crate's [`sync`](crate::sync)
//! shim, so the code loom checks (`loom-tests/`) is the code that runs.
//!
//! | resource | algorithm | streams |
//! |---|---|---|
//! | [`Pool`] | [`algo::Pool`](crate::algo::Pool): TLSF coalescing list, growth, trim | ignored |
//! | [`FixedSize`] | [`algo::FixedSizeList`](crate::algo::FixedSizeList): one block size | ignored |
//! | [`Binning`] | [`algo::Binning`](crate::algo::Binning): size classes into fixed-size bins | ignored |
//! | [`StreamOrderedPool`] (`alloc`) | one TLSF heap per stream, each with its own lock, free blocks partitioned by the stream that freed them | ordered when a block crosses streams |
//! | [`Arena`] (`alloc`) | [`algo::GlobalArena`](crate::algo::GlobalArena) + one [`algo::SubArena`](crate::algo::SubArena) per stream, each with its own lock | ordered when memory crosses streams |
//!
//! ```
//! use strata_core::algo::PoolConfig;
//! use strata_core::resources::Pool;
//! use strata_core::{MemoryResource, SimUpstream, StreamKey};
//!
//! let pool = Pool::new(SimUpstream::new(1 << 30), PoolConfig::new(1 << 20))?;
//! std::thread::scope(|s| {
//!     for t in 0..2 {
//!         let pool = &pool;
//!         s.spawn(move || {
//!             let a = pool.allocate(4096 * (t + 1), 256, StreamKey::DEFAULT).unwrap();
//!             pool.deallocate(a, 4096 * (t + 1), 256, StreamKey::DEFAULT).unwrap();
//!         });
//!     }
//! });
//! assert_eq!(pool.lock().live_bytes(), 0);
//! # Ok::<(), strata_core::Error>(())
//! ```

#[cfg(feature = "alloc")]
mod arena;
mod binning;
mod fixed;
mod pool;
#[cfg(feature = "alloc")]
mod stream_ordered;
#[cfg(feature = "alloc")]
mod table;

#[cfg(feature = "alloc")]
pub use arena::{Arena, ArenaStats, DEFAULT_ARENA_STREAMS};
pub use binning::Binning;
pub use fixed::FixedSize;
pub use pool::Pool;
#[cfg(feature = "alloc")]
pub use stream_ordered::{
    DEFAULT_POOL_STREAMS, NoOrdering, Reuse, StreamOrderedPool, StreamPoolStats,
};
