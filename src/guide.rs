//! The user guide (`docs/`), compiled and run as doctests.
//!
//! Each page of the guide is the documentation of one item below, so `cargo test --doc` (and
//! `cargo test --workspace`) compiles and runs every Rust block in it. Blocks that need a GPU
//! are `no_run` here (compiled, not run); each is also a snippet file in
//! `tests/guide_snippets/`, which `tests/guide_gpu.rs` runs on a GPU machine, and
//! `tests/guide_sync.rs` fails when a block and its snippet differ.
//!
//! This module exists only under `cfg(doctest)`: it is not part of the library. Pages that use
//! `strata::driver` are tested when the `driver` feature is on (the default).

/// Page 1.
#[cfg(feature = "driver")]
#[doc = include_str!("../docs/introduction.md")]
pub struct Introduction;

/// Page 2.
#[cfg(feature = "driver")]
#[doc = include_str!("../docs/installation.md")]
pub struct Installation;

/// Page 3.
#[cfg(feature = "driver")]
#[doc = include_str!("../docs/choosing-a-resource.md")]
pub struct ChoosingAResource;

/// Page 4.
#[doc = include_str!("../docs/pool-allocators.md")]
pub struct PoolAllocators;

/// Page 5.
#[cfg(feature = "driver")]
#[doc = include_str!("../docs/stream-ordered-allocation.md")]
pub struct StreamOrderedAllocation;

/// Page 6.
#[cfg(feature = "driver")]
#[doc = include_str!("../docs/managed-memory.md")]
pub struct ManagedMemory;

/// Page 7.
#[doc = include_str!("../docs/logging-and-profiling.md")]
pub struct LoggingAndProfiling;

/// Page 8.
#[cfg(feature = "driver")]
#[doc = include_str!("../docs/programming-guide.md")]
pub struct ProgrammingGuide;
