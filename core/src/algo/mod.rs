//! The allocation algorithms: single-threaded structs with `&mut self` methods over
//! [`Range`](crate::Range)s. They never touch the memory they manage and allocate nothing
//! beyond their metadata store. The thread-safe resources at the crate root wrap them.

mod pool;
mod tlsf;
pub use pool::{Pool, PoolConfig};
pub use tlsf::{
    AddressIndex, AddressTable, BEST_FIT_CANDIDATES, Block, BlockHandle, CoalescingList, Fit,
    HandlesOnly, PartitionId,
};

mod fixed;
#[cfg(feature = "alloc")]
pub use fixed::Heap;
pub use fixed::{
    BUCKET_SLOTS, ChunkMeta, FixedBlocks, FixedConfig, FixedSizeList, FixedStats, Inline,
    LookupBucket, MAX_BLOCK_SIZE, MAX_BLOCKS_PER_CHUNK, MetaStorage, MetaVec,
};

mod binning;
pub use binning::{Binning, BinningStats, DEFAULT_BIN_EXPONENTS, DEFAULT_BLOCKS_PER_BIN_CHUNK};

mod arena;
pub use arena::{
    Arena, ArenaConfig, GlobalArena, MAX_SUPERBLOCK_SIZE, MIN_SUPERBLOCK_SIZE, SubArena,
};
