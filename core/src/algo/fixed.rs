//! Fixed-size block lists: every block has the same size, so allocation and free are O(1).
//!
//! Two types share the algorithm:
//!
//! - [`FixedBlocks<M>`] is the algorithm alone. It does not own an upstream: the calls that
//!   need one ([`FixedBlocks::allocate`], [`FixedBlocks::grow`], [`FixedBlocks::trim`]) take it
//!   by `&mut`, so composites such as [`Binning`](super::Binning) can run many lists over one
//!   upstream.
//! - [`FixedSizeList<U, M>`] owns its upstream and a [`FixedBlocks<M>`]: the type to use on its
//!   own.
//!
//! Like RMM's `fixed_size_memory_resource`, blocks are cut from *chunks* of
//! `block_size × blocks_per_chunk` bytes taken from the upstream, one chunk at a time
//! (defaults: 1 MiB blocks, 128 blocks per chunk, see [`FixedConfig::DEFAULT`]). Unlike RMM,
//! every free is validated, and wholly free chunks can be given back ([`FixedBlocks::trim`]).
//!
//! # Metadata
//!
//! The metadata lives in a [`MetaStorage`]: [`Inline<BLOCKS, CHUNKS>`] keeps it in fixed arrays
//! (no heap; `const fn new`, so a list can live in a `static`), [`Heap`] (feature `alloc`) in
//! growable vectors. Per block it is one `u32` (a free-list link, or the allocated flag and the
//! request size in 256-byte units); per chunk a 24-byte record and a 64-byte bucket of the
//! address lookup table. A block therefore costs `4 + 88 / blocks_per_chunk` bytes: 4.7 at
//! the default 128 blocks per chunk, 48 at 2, and 92 with one block per chunk (the only shape
//! above 64). See [`FixedBlocks::metadata_bytes`].
//!
//! ```
//! use strata_core::algo::{FixedConfig, FixedSizeList, Inline};
//! use strata_core::SimUpstream;
//!
//! // 4 KiB blocks, 16 per chunk; room for 64 blocks in 4 chunks, all inline.
//! let config = FixedConfig::new(4096, 16)?;
//! let mut list: FixedSizeList<_, Inline<64, 4>> =
//!     FixedSizeList::new(SimUpstream::new(1 << 20), config);
//! let a = list.allocate(1000, 256)?;
//! assert_eq!(a.len, 1024); // the request, rounded up to 256 bytes
//! assert_eq!(list.stats().upstream_bytes, 64 * 1024);
//! list.deallocate(a.start, 1000)?;
//! assert_eq!(list.trim()?, 64 * 1024); // the wholly free chunk went back
//! # Ok::<(), strata_core::Error>(())
//! ```

use core::fmt;

use crate::{DEFAULT_ALIGNMENT, Error, Range, Upstream, align_up, check_alignment};

/// A vector of metadata records: fixed capacity (`heapless::Vec`) or growable
/// (`alloc::vec::Vec`, feature `alloc`).
///
/// The algorithms check [`MetaVec::spare`] before they change anything, so a full fixed vector
/// turns into [`Error::MetadataExhausted`] with no state changed.
///
/// ```
/// use strata_core::algo::MetaVec;
/// let mut v: heapless::Vec<u32, 2> = MetaVec::EMPTY;
/// MetaVec::push(&mut v, 1)?;
/// MetaVec::push(&mut v, 2)?;
/// assert_eq!(v.spare(), 0);
/// assert!(MetaVec::push(&mut v, 3).is_err());
/// assert_eq!(v.as_slice(), &[1, 2]);
/// # Ok::<(), strata_core::Error>(())
/// ```
pub trait MetaVec<T: Copy> {
    /// An empty vector (usable in `const` contexts).
    const EMPTY: Self;
    /// The records, in order.
    fn as_slice(&self) -> &[T];
    /// The records, mutably.
    fn as_mut_slice(&mut self) -> &mut [T];
    /// How many more records fit (`usize::MAX` for a growable vector).
    fn spare(&self) -> usize;
    /// The fixed capacity, or `None` for a growable vector.
    fn limit(&self) -> Option<usize>;
    /// Appends a record.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when a fixed vector is full; nothing changes then.
    fn push(&mut self, value: T) -> Result<(), Error>;
    /// Inserts a record at `index`, shifting the later ones.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when a fixed vector is full; nothing changes then.
    ///
    /// # Panics
    ///
    /// If `index > len` (a caller bug).
    fn insert(&mut self, index: usize, value: T) -> Result<(), Error>;
    /// Removes and returns the record at `index`, shifting the later ones.
    ///
    /// # Panics
    ///
    /// If `index >= len` (a caller bug).
    fn remove(&mut self, index: usize) -> T;
    /// Grows (with copies of `value`) or shrinks to `len` records.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when a fixed vector cannot hold `len`; nothing changes then.
    fn resize(&mut self, len: usize, value: T) -> Result<(), Error>;
    /// The number of records.
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    /// Whether there is no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Copy, const N: usize> MetaVec<T> for heapless::Vec<T, N> {
    const EMPTY: Self = heapless::Vec::new();
    #[inline]
    fn as_slice(&self) -> &[T] {
        self
    }
    #[inline]
    fn as_mut_slice(&mut self) -> &mut [T] {
        self
    }
    #[inline]
    fn spare(&self) -> usize {
        N - self.len()
    }
    fn limit(&self) -> Option<usize> {
        Some(N)
    }
    fn push(&mut self, value: T) -> Result<(), Error> {
        heapless::Vec::push(self, value).map_err(|_| Error::MetadataExhausted { capacity: N })
    }
    fn insert(&mut self, index: usize, value: T) -> Result<(), Error> {
        heapless::Vec::insert(self, index, value)
            .map_err(|_| Error::MetadataExhausted { capacity: N })
    }
    fn remove(&mut self, index: usize) -> T {
        heapless::Vec::remove(self, index)
    }
    fn resize(&mut self, len: usize, value: T) -> Result<(), Error> {
        heapless::Vec::resize(self, len, value)
            .map_err(|_| Error::MetadataExhausted { capacity: N })
    }
}

#[cfg(feature = "alloc")]
impl<T: Copy> MetaVec<T> for alloc::vec::Vec<T> {
    const EMPTY: Self = alloc::vec::Vec::new();
    #[inline]
    fn as_slice(&self) -> &[T] {
        self
    }
    #[inline]
    fn as_mut_slice(&mut self) -> &mut [T] {
        self
    }
    #[inline]
    fn spare(&self) -> usize {
        usize::MAX
    }
    fn limit(&self) -> Option<usize> {
        None
    }
    fn push(&mut self, value: T) -> Result<(), Error> {
        alloc::vec::Vec::push(self, value);
        Ok(())
    }
    fn insert(&mut self, index: usize, value: T) -> Result<(), Error> {
        alloc::vec::Vec::insert(self, index, value);
        Ok(())
    }
    fn remove(&mut self, index: usize) -> T {
        alloc::vec::Vec::remove(self, index)
    }
    fn resize(&mut self, len: usize, value: T) -> Result<(), Error> {
        alloc::vec::Vec::resize(self, len, value);
        Ok(())
    }
}

/// Where the algorithms of this module ([`FixedBlocks`], [`Binning`](super::Binning)) keep
/// their metadata: a family of [`MetaVec`]s.
///
/// Two implementations: [`Inline`] (fixed capacity, no heap) and [`Heap`] (growable, feature
/// `alloc`).
///
/// ```
/// use strata_core::algo::{FixedBlocks, FixedConfig, Inline, MetaStorage};
/// fn blocks_in_use<M: MetaStorage>(list: &FixedBlocks<M>) -> u64 {
///     list.stats().live_blocks
/// }
/// let list: FixedBlocks<Inline<16, 2>> = FixedBlocks::new(FixedConfig::new(256, 8)?);
/// assert_eq!(blocks_in_use(&list), 0);
/// # Ok::<(), strata_core::Error>(())
/// ```
pub trait MetaStorage {
    /// One `u32` per block of every chunk slot.
    type Blocks: MetaVec<u32>;
    /// One record per chunk slot.
    type Chunks: MetaVec<ChunkMeta>;
    /// The address lookup table: one bucket per chunk slot.
    type Buckets: MetaVec<LookupBucket>;
    /// Sorted ranges (e.g. binning's large allocations).
    type Ranges: MetaVec<Range>;
}

/// Fixed-capacity metadata, with no heap: room for `BLOCKS` blocks in `CHUNKS` chunks (and, in
/// [`Binning`](super::Binning), `CHUNKS` large allocations).
///
/// A list can grow while both limits allow: with `blocks_per_chunk` blocks per chunk it holds
/// `min(CHUNKS, BLOCKS / blocks_per_chunk)` chunks. Past that, growing returns
/// [`Error::MetadataExhausted`].
///
/// ```
/// use strata_core::algo::{FixedBlocks, FixedConfig, Inline};
/// // A list in a static: `new` is a `const fn`.
/// const CONFIG: FixedConfig = FixedConfig::DEFAULT;
/// static LIST: strata_core::sync::Mutex<FixedBlocks<Inline<1024, 8>>> =
///     strata_core::sync::Mutex::new(FixedBlocks::new(CONFIG));
/// assert_eq!(LIST.lock().config().block_size(), 1 << 20);
/// ```
#[derive(Debug, Clone, Copy)]
pub enum Inline<const BLOCKS: usize, const CHUNKS: usize> {}

impl<const BLOCKS: usize, const CHUNKS: usize> MetaStorage for Inline<BLOCKS, CHUNKS> {
    type Blocks = heapless::Vec<u32, BLOCKS>;
    type Chunks = heapless::Vec<ChunkMeta, CHUNKS>;
    type Buckets = heapless::Vec<LookupBucket, CHUNKS>;
    type Ranges = heapless::Vec<Range, CHUNKS>;
}

/// Growable metadata on the heap (feature `alloc`).
///
/// ```
/// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
/// use strata_core::SimUpstream;
/// let mut list: FixedSizeList<_, Heap> =
///     FixedSizeList::new(SimUpstream::new(1 << 30), FixedConfig::new(256, 4)?);
/// for _ in 0..1000 {
///     list.allocate(256, 256)?;
/// }
/// assert_eq!(list.stats().chunks, 250);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Copy)]
pub enum Heap {}

#[cfg(feature = "alloc")]
impl MetaStorage for Heap {
    type Blocks = alloc::vec::Vec<u32>;
    type Chunks = alloc::vec::Vec<ChunkMeta>;
    type Buckets = alloc::vec::Vec<LookupBucket>;
    type Ranges = alloc::vec::Vec<Range>;
}

/// Chunk slots per bucket of the address lookup table.
pub const BUCKET_SLOTS: usize = 4;

/// One bucket of a fixed-size list's address lookup table (opaque; public only because
/// [`MetaStorage`] names it): up to [`BUCKET_SLOTS`] chunks, each with its start address
/// kept inline so that a lookup reads one cache line.
///
/// ```
/// assert_eq!(core::mem::size_of::<strata_core::algo::LookupBucket>(), 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct LookupBucket {
    /// Start of each entry's chunk (meaningless where `slots` is `NIL`).
    starts: [u64; BUCKET_SLOTS],
    /// Chunk slot of each entry, or `NIL` for an empty entry.
    slots: [u32; BUCKET_SLOTS],
}

/// A bucket with no entry.
const EMPTY_BUCKET: LookupBucket = LookupBucket {
    starts: [0; BUCKET_SLOTS],
    slots: [NIL; BUCKET_SLOTS],
};

/// The largest block size (512 GiB): a block's request size is kept in 31 bits of 256-byte
/// units.
pub const MAX_BLOCK_SIZE: u64 = 1 << 39;

/// The most blocks in one chunk.
pub const MAX_BLOCKS_PER_CHUNK: u32 = END - 1;

/// "No chunk" in chunk links and table buckets.
const NIL: u32 = u32::MAX;
/// Block entry flag: the block is allocated; the low 31 bits hold `units - 1`.
const ALLOCATED: u32 = 1 << 31;
/// Block entry of a free block with no successor in its chunk's free list.
const END: u32 = ALLOCATED - 1;
/// The `start` of a vacant chunk slot.
const VACANT: u64 = u64::MAX;
/// A vacant chunk slot.
const VACANT_CHUNK: ChunkMeta = ChunkMeta {
    start: VACANT,
    free_head: END,
    free_count: 0,
    prev: NIL,
    next: NIL,
};
/// Multiplier of the lookup table's hash (2^64 / golden ratio).
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;
/// A block size that is not a power of two: divide instead of shifting.
const NO_SHIFT: u32 = u32::MAX;

/// The shape of a fixed-size list: the block size and how many blocks one chunk holds.
///
/// ```
/// use strata_core::algo::FixedConfig;
/// let c = FixedConfig::new(1000, 8)?;
/// assert_eq!(c.block_size(), 1024); // rounded up to 256 bytes
/// assert_eq!(c.chunk_bytes(), 8 * 1024);
/// assert_eq!(FixedConfig::DEFAULT.chunk_bytes(), 128 << 20); // RMM's 1 MiB x 128
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedConfig {
    /// Multiple of 256, in `256..=MAX_BLOCK_SIZE`.
    block_size: u64,
    /// In `1..=MAX_BLOCKS_PER_CHUNK`; `block_size * blocks_per_chunk <= 2^62`.
    blocks_per_chunk: u32,
}

impl FixedConfig {
    /// RMM's defaults: 1 MiB blocks, 128 blocks (128 MiB) per chunk.
    pub const DEFAULT: FixedConfig = FixedConfig {
        block_size: 1 << 20,
        blocks_per_chunk: 128,
    };

    /// Checks and builds a configuration. `block_size` is rounded up to a multiple of 256.
    ///
    /// # Errors
    ///
    /// - [`Error::ZeroSize`] if `block_size` or `blocks_per_chunk` is 0;
    /// - [`Error::TooLarge`] if `block_size > MAX_BLOCK_SIZE` or
    ///   `blocks_per_chunk > MAX_BLOCKS_PER_CHUNK`;
    /// - [`Error::SizeOverflow`] if a chunk would exceed 2^62 bytes.
    ///
    /// ```
    /// use strata_core::{algo::FixedConfig, Error};
    /// assert_eq!(FixedConfig::new(0, 8), Err(Error::ZeroSize));
    /// assert!(FixedConfig::new(256, 1).is_ok());
    /// // Usable in constants:
    /// const SMALL: FixedConfig = match FixedConfig::new(512, 64) {
    ///     Ok(c) => c,
    ///     Err(_) => panic!("bad config"),
    /// };
    /// assert_eq!(SMALL.blocks_per_chunk(), 64);
    /// ```
    pub const fn new(block_size: u64, blocks_per_chunk: u32) -> Result<Self, Error> {
        if block_size == 0 || blocks_per_chunk == 0 {
            return Err(Error::ZeroSize);
        }
        if block_size > MAX_BLOCK_SIZE {
            return Err(Error::TooLarge {
                requested: block_size,
                max: MAX_BLOCK_SIZE,
            });
        }
        if blocks_per_chunk > MAX_BLOCKS_PER_CHUNK {
            return Err(Error::TooLarge {
                requested: blocks_per_chunk as u64,
                max: MAX_BLOCKS_PER_CHUNK as u64,
            });
        }
        let block_size = match align_up(block_size, DEFAULT_ALIGNMENT) {
            Some(b) => b,
            // block_size <= 2^39, so rounding cannot overflow.
            None => {
                return Err(Error::SizeOverflow {
                    requested: block_size,
                });
            }
        };
        match block_size.checked_mul(blocks_per_chunk as u64) {
            Some(chunk) if chunk <= 1 << 62 => Ok(Self {
                block_size,
                blocks_per_chunk,
            }),
            _ => Err(Error::SizeOverflow {
                requested: block_size,
            }),
        }
    }

    /// The block size in bytes (a multiple of 256).
    ///
    /// ```
    /// assert_eq!(strata_core::algo::FixedConfig::DEFAULT.block_size(), 1 << 20);
    /// ```
    #[inline]
    pub const fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Blocks per chunk.
    ///
    /// ```
    /// assert_eq!(strata_core::algo::FixedConfig::DEFAULT.blocks_per_chunk(), 128);
    /// ```
    #[inline]
    pub const fn blocks_per_chunk(&self) -> u32 {
        self.blocks_per_chunk
    }

    /// Bytes per chunk: `block_size × blocks_per_chunk`.
    ///
    /// ```
    /// let c = strata_core::algo::FixedConfig::new(256, 4)?;
    /// assert_eq!(c.chunk_bytes(), 1024);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub const fn chunk_bytes(&self) -> u64 {
        self.block_size * self.blocks_per_chunk as u64
    }
}

impl Default for FixedConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The metadata of one chunk slot (opaque; public only because [`MetaStorage`] names it).
///
/// A live slot holds a chunk taken from the upstream; a vacant slot (after [`FixedBlocks::trim`])
/// waits to be reused, linked through `next`.
///
/// ```
/// assert_eq!(core::mem::size_of::<strata_core::algo::ChunkMeta>(), 24);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// First address of the chunk, or `VACANT`.
    start: u64,
    /// Local index of the first free block, or `END`.
    free_head: u32,
    /// Free blocks in the chunk, `0..=blocks_per_chunk`.
    free_count: u32,
    /// Previous chunk in the open list, or `NIL`.
    prev: u32,
    /// Next chunk in the open list (or, when vacant, in the vacant list), or `NIL`.
    next: u32,
}

/// Counters of a [`FixedBlocks`] / [`FixedSizeList`].
///
/// Every byte taken from the upstream is in a block that is either live or free:
/// `(live_blocks + free_blocks) × block_size == upstream_bytes`.
///
/// ```
/// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
/// use strata_core::SimUpstream;
/// let mut list: FixedSizeList<_, Heap> =
///     FixedSizeList::new(SimUpstream::new(1 << 20), FixedConfig::new(512, 4)?);
/// list.allocate(300, 256)?;
/// let s = list.stats();
/// assert_eq!((s.live_blocks, s.free_blocks, s.chunks), (1, 3, 1));
/// assert_eq!(s.requested_bytes, 512); // 300 rounded up to 256 bytes
/// assert_eq!(s.live_bytes() + s.free_bytes(), s.upstream_bytes);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FixedStats {
    /// The block size in bytes.
    pub block_size: u64,
    /// Chunks held from the upstream.
    pub chunks: u64,
    /// Bytes held from the upstream (`chunks × chunk_bytes`).
    pub upstream_bytes: u64,
    /// Blocks handed out.
    pub live_blocks: u64,
    /// Blocks free in the held chunks.
    pub free_blocks: u64,
    /// The sizes of the live blocks' requests, each rounded up to 256 bytes.
    pub requested_bytes: u64,
}

impl FixedStats {
    /// Bytes in live blocks (`live_blocks × block_size`).
    ///
    /// ```
    /// let s = strata_core::algo::FixedStats { block_size: 256, live_blocks: 3, ..Default::default() };
    /// assert_eq!(s.live_bytes(), 768);
    /// ```
    pub const fn live_bytes(&self) -> u64 {
        self.live_blocks * self.block_size
    }

    /// Bytes in free blocks (`free_blocks × block_size`).
    ///
    /// ```
    /// let s = strata_core::algo::FixedStats { block_size: 256, free_blocks: 2, ..Default::default() };
    /// assert_eq!(s.free_bytes(), 512);
    /// ```
    pub const fn free_bytes(&self) -> u64 {
        self.free_blocks * self.block_size
    }
}

/// The fixed-size block algorithm, without an upstream of its own.
///
/// # Structure and invariants
///
/// - Chunk slot `c` owns block entries `c × bpc .. (c + 1) × bpc` of the block vector
///   (`bpc` = blocks per chunk). An entry is either `ALLOCATED | (units - 1)` (a live block and
///   its request size in 256-byte units) or the local index of the next free block of the same
///   chunk (`END` for the last). Each chunk's free list links exactly its `free_count` free
///   blocks.
/// - The *open list* (doubly linked through the chunk records) holds exactly the chunks with a
///   free block, partially free chunks first, wholly free chunks last. Allocation takes from
///   the head, so partially used chunks fill up and wholly free ones stay free for
///   [`trim`](Self::trim), which takes them from the tail.
/// - The lookup table maps an address to its chunk in O(1): with `G` the smallest power of two
///   `>= chunk_bytes`, each chunk is entered under the (at most two) `G`-granules it touches;
///   buckets of [`BUCKET_SLOTS`] (chunk start, chunk slot) entries are probed linearly from
///   the granule's hash. There are at least as many buckets as live chunks, so the table is
///   at most half full, and a lookup almost always reads one bucket: one cache line.
///
/// Allocation is O(1) (plus one upstream call when a new chunk is needed); free is O(1);
/// growing is O(`bpc`), plus O(chunks) when the table is rebuilt; `trim` is O(chunks).
///
/// ```
/// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
/// use strata_core::{SimUpstream, Error};
///
/// let mut up = SimUpstream::new(1 << 20);
/// let mut list: FixedBlocks<Heap> = FixedBlocks::new(FixedConfig::new(1024, 4)?);
/// let a = list.allocate(&mut up, 1024, 256)?;
/// assert_eq!(list.deallocate(a.start + 256, 1024), Err(Error::NotAllocated { addr: a.start + 256 }));
/// list.deallocate(a.start, 1024)?;
/// assert_eq!(list.deallocate(a.start, 1024), Err(Error::DoubleFree { addr: a.start }));
/// list.trim(&mut up)?;
/// assert_eq!(up.in_use(), 0);
/// # Ok::<(), Error>(())
/// ```
pub struct FixedBlocks<M: MetaStorage> {
    config: FixedConfig,
    /// `log2(block_size)` when it is a power of two, else `NO_SHIFT`.
    block_shift: u32,
    /// `log2` of the smallest power of two `>= chunk_bytes` (the lookup granule).
    granule_shift: u32,
    blocks: M::Blocks,
    chunks: M::Chunks,
    buckets: M::Buckets,
    /// Head and tail of the open list, or `NIL`.
    open_head: u32,
    open_tail: u32,
    /// Head of the list of vacant chunk slots, or `NIL`.
    vacant_head: u32,
    live_chunks: u32,
    live_blocks: u64,
    /// Sum over live blocks of their request size in 256-byte units.
    live_units: u64,
}

impl<M: MetaStorage> fmt::Debug for FixedBlocks<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedBlocks")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<M: MetaStorage> FixedBlocks<M> {
    /// An empty list. Nothing is taken from the upstream until the first allocation (or
    /// [`grow`](Self::grow)). A `const fn`: with [`Inline`] metadata a list can be built at
    /// compile time.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap, Inline};
    /// const LIST: FixedBlocks<Inline<128, 1>> = FixedBlocks::new(FixedConfig::DEFAULT);
    /// let list = LIST;
    /// assert_eq!(list.stats().chunks, 0);
    /// let list = FixedBlocks::<Heap>::new(FixedConfig::DEFAULT);
    /// assert_eq!(list.stats().upstream_bytes, 0);
    /// ```
    pub const fn new(config: FixedConfig) -> Self {
        let block_size = config.block_size;
        FixedBlocks {
            config,
            block_shift: if block_size.is_power_of_two() {
                block_size.trailing_zeros()
            } else {
                NO_SHIFT
            },
            granule_shift: config.chunk_bytes().next_power_of_two().trailing_zeros(),
            blocks: M::Blocks::EMPTY,
            chunks: M::Chunks::EMPTY,
            buckets: M::Buckets::EMPTY,
            open_head: NIL,
            open_tail: NIL,
            vacant_head: NIL,
            live_chunks: 0,
            live_blocks: 0,
            live_units: 0,
        }
    }

    /// The configuration.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// let list = FixedBlocks::<Heap>::new(FixedConfig::new(300, 2)?);
    /// assert_eq!(list.config().block_size(), 512);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn config(&self) -> FixedConfig {
        self.config
    }

    /// Checks a request and returns its size in 256-byte units.
    #[inline]
    fn request_units(&self, size: u64, align: u64) -> Result<u32, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        check_alignment(align)?;
        if align > DEFAULT_ALIGNMENT {
            return Err(Error::InvalidAlignment { align });
        }
        if size > self.config.block_size {
            return Err(Error::TooLarge {
                requested: size,
                max: self.config.block_size,
            });
        }
        // size <= block_size <= 2^39, so this neither overflows nor exceeds 2^31 units.
        Ok(size.div_ceil(DEFAULT_ALIGNMENT) as u32)
    }

    /// Allocates one block for a request of `size` bytes aligned to `align`, taking a new chunk
    /// from `upstream` when no block is free.
    ///
    /// Returns `size` rounded up to 256 bytes at the block's address (the block itself is
    /// [`FixedConfig::block_size`] bytes). Always pass the same upstream to one list.
    ///
    /// # Errors
    ///
    /// - [`Error::ZeroSize`] for `size == 0`;
    /// - [`Error::InvalidAlignment`] if `align` is not a power of two or exceeds 256 (blocks
    ///   are 256-byte aligned);
    /// - [`Error::TooLarge`] if `size` exceeds the block size;
    /// - [`Error::MetadataExhausted`] if a new chunk is needed and fixed metadata is full;
    /// - the upstream's error if it cannot supply a chunk.
    ///
    /// Nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Inline};
    /// use strata_core::{SimUpstream, Error};
    /// let mut up = SimUpstream::new(1 << 20);
    /// let mut list = FixedBlocks::<Inline<8, 2>>::new(FixedConfig::new(256, 4)?);
    /// let a = list.allocate(&mut up, 200, 64)?;
    /// assert_eq!((a.len, a.start % 256), (256, 0));
    /// assert_eq!(list.allocate(&mut up, 257, 256), Err(Error::TooLarge { requested: 257, max: 256 }));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn allocate<U: Upstream + ?Sized>(
        &mut self,
        upstream: &mut U,
        size: u64,
        align: u64,
    ) -> Result<Range, Error> {
        let units = self.request_units(size, align)?;
        if self.open_head == NIL {
            self.grow(upstream)?;
        }
        Ok(self.take_block(units))
    }

    /// Allocates a block if one is free, without calling an upstream.
    ///
    /// Returns `Ok(None)` when every block is in use.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`], [`Error::InvalidAlignment`] or [`Error::TooLarge`] as for
    /// [`allocate`](Self::allocate); nothing changes then.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// let mut list = FixedBlocks::<Heap>::new(FixedConfig::new(256, 1)?);
    /// assert_eq!(list.try_allocate(256, 256)?, None);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn try_allocate(&mut self, size: u64, align: u64) -> Result<Option<Range>, Error> {
        let units = self.request_units(size, align)?;
        if self.open_head == NIL {
            return Ok(None);
        }
        Ok(Some(self.take_block(units)))
    }

    /// Takes the first free block of the head of the open list. The list must not be empty.
    #[inline]
    fn take_block(&mut self, units: u32) -> Range {
        debug_assert!(self.open_head != NIL);
        debug_assert!(units >= 1 && u64::from(units) * DEFAULT_ALIGNMENT <= self.config.block_size);
        let c = self.open_head;
        let bpc = self.config.blocks_per_chunk;
        let chunk = &mut self.chunks.as_mut_slice()[c as usize];
        let local = chunk.free_head;
        debug_assert!(local < bpc && chunk.free_count > 0);
        let entry = &mut self.blocks.as_mut_slice()[c as usize * bpc as usize + local as usize];
        debug_assert!(
            *entry & ALLOCATED == 0,
            "free list links an allocated block"
        );
        chunk.free_head = *entry;
        *entry = ALLOCATED | (units - 1);
        chunk.free_count -= 1;
        let (chunk_start, now_full) = (chunk.start, chunk.free_count == 0);
        let start = chunk_start + self.block_offset(local);
        if now_full {
            self.unlink(c);
        }
        self.live_blocks += 1;
        self.live_units += u64::from(units);
        Range::new(start, u64::from(units) * DEFAULT_ALIGNMENT)
    }

    #[inline]
    fn block_offset(&self, local: u32) -> u64 {
        if self.block_shift != NO_SHIFT {
            u64::from(local) << self.block_shift
        } else {
            u64::from(local) * self.config.block_size
        }
    }

    /// Frees the block at `addr`, allocated for a request of `size` bytes.
    ///
    /// `size` must round up (to 256 bytes) to what the allocation's did: the original request
    /// size and the returned range's `len` both do.
    ///
    /// # Errors
    ///
    /// - [`Error::NotAllocated`] if `addr` is in none of the list's chunks, or is not the start
    ///   of a block;
    /// - [`Error::DoubleFree`] if the block is free;
    /// - [`Error::SizeMismatch`] if `size` does not match (`allocated` is the allocation's size
    ///   rounded up to 256 bytes).
    ///
    /// Nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// use strata_core::{SimUpstream, Error};
    /// let mut up = SimUpstream::new(1 << 20);
    /// let mut list = FixedBlocks::<Heap>::new(FixedConfig::new(1024, 4)?);
    /// let a = list.allocate(&mut up, 600, 256)?;
    /// assert_eq!(
    ///     list.deallocate(a.start, 1024),
    ///     Err(Error::SizeMismatch { addr: a.start, allocated: 768, given: 1024 })
    /// );
    /// list.deallocate(a.start, 600)?;
    /// # Ok::<(), Error>(())
    /// ```
    #[inline(always)]
    pub fn deallocate(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        let (c, chunk_start) = self.find_chunk(addr).ok_or(Error::NotAllocated { addr })?;
        let bpc = self.config.blocks_per_chunk;
        let offset = addr - chunk_start;
        let local = if self.block_shift != NO_SHIFT {
            if offset & (self.config.block_size - 1) != 0 {
                return Err(Error::NotAllocated { addr });
            }
            (offset >> self.block_shift) as u32
        } else {
            if !offset.is_multiple_of(self.config.block_size) {
                return Err(Error::NotAllocated { addr });
            }
            (offset / self.config.block_size) as u32
        };
        debug_assert!(local < bpc);
        let index = c as usize * bpc as usize + local as usize;
        let entry = self.blocks.as_slice()[index];
        if entry & ALLOCATED == 0 {
            return Err(Error::DoubleFree { addr });
        }
        let units = (entry & !ALLOCATED) + 1;
        if size.div_ceil(DEFAULT_ALIGNMENT) != u64::from(units) {
            return Err(Error::SizeMismatch {
                addr,
                allocated: u64::from(units) * DEFAULT_ALIGNMENT,
                given: size,
            });
        }
        // Validated: commit.
        let chunk = &mut self.chunks.as_mut_slice()[c as usize];
        self.blocks.as_mut_slice()[index] = chunk.free_head;
        chunk.free_head = local;
        chunk.free_count += 1;
        let free_count = chunk.free_count;
        debug_assert!(free_count <= bpc);
        if free_count == bpc {
            // Wholly free: to the tail, where trim looks.
            if free_count > 1 {
                self.unlink(c);
            }
            self.push_tail(c);
        } else if free_count == 1 {
            // Was full, now partially free: to the head, where allocation looks.
            self.push_head(c);
        }
        self.live_blocks -= 1;
        self.live_units -= u64::from(units);
        Ok(())
    }

    /// Whether `addr` lies in one of the list's chunks (a live or a free block).
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// let mut up = strata_core::SimUpstream::new(1 << 20);
    /// let mut list = FixedBlocks::<Heap>::new(FixedConfig::new(256, 4)?);
    /// let a = list.allocate(&mut up, 256, 256)?;
    /// assert!(list.contains(a.start + 1000));
    /// assert!(!list.contains(a.start + 1024));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn contains(&self, addr: u64) -> bool {
        self.find_chunk(addr).is_some()
    }

    /// The chunk slot and start of the chunk that contains `addr`.
    #[inline(always)]
    fn find_chunk(&self, addr: u64) -> Option<(u32, u64)> {
        let buckets = self.buckets.as_slice();
        let n = buckets.len();
        if n == 0 {
            return None;
        }
        let chunk_bytes = self.config.chunk_bytes();
        let mut b = bucket_index(addr >> self.granule_shift, n);
        // The table is at most half full, so probing ends at a bucket with an empty entry; the
        // bound only guards against a broken invariant.
        for _ in 0..n {
            let bucket = &buckets[b];
            // Bit j: entry j is used / entry j's chunk contains `addr` (computed without
            // branches; the chunk start of an empty entry is ignored).
            let (mut used, mut hit) = (0u32, 0u32);
            for j in 0..BUCKET_SLOTS {
                used |= u32::from(bucket.slots[j] != NIL) << j;
                hit |= u32::from(addr.wrapping_sub(bucket.starts[j]) < chunk_bytes) << j;
            }
            hit &= used;
            if hit != 0 {
                let j = hit.trailing_zeros() as usize;
                return Some((bucket.slots[j], bucket.starts[j]));
            }
            if used != (1 << BUCKET_SLOTS) - 1 {
                return None;
            }
            b = if b + 1 == n { 0 } else { b + 1 };
        }
        debug_assert!(false, "fixed list lookup table is full");
        None
    }

    /// Takes one chunk from `upstream` and adds its blocks to the free blocks (at the tail of
    /// the open list). Returns the chunk's range. Use it to preallocate (RMM preallocates one
    /// chunk at construction).
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when fixed metadata has no room for another chunk (the
    /// upstream is not called then); the upstream's error. Nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Inline};
    /// use strata_core::{SimUpstream, Error};
    /// let mut up = SimUpstream::new(1 << 20);
    /// let mut list = FixedBlocks::<Inline<8, 4>>::new(FixedConfig::new(256, 4)?);
    /// list.grow(&mut up)?;
    /// list.grow(&mut up)?;
    /// // 8 block entries: no room for a third chunk of 4.
    /// assert_eq!(list.grow(&mut up), Err(Error::MetadataExhausted { capacity: 8 }));
    /// assert_eq!(up.in_use(), 2048);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn grow<U: Upstream + ?Sized>(&mut self, upstream: &mut U) -> Result<Range, Error> {
        let bpc = self.config.blocks_per_chunk as usize;
        // 1. Room for the metadata, checked before anything changes.
        let new_slot = self.vacant_head == NIL;
        if new_slot {
            if self.chunks.spare() == 0 {
                return Err(Error::MetadataExhausted {
                    capacity: self.chunks.limit().unwrap_or(usize::MAX),
                });
            }
            if self.blocks.spare() < bpc {
                return Err(Error::MetadataExhausted {
                    capacity: self.blocks.limit().unwrap_or(usize::MAX),
                });
            }
            if self.chunks.len() >= NIL as usize {
                return Err(Error::MetadataExhausted {
                    capacity: NIL as usize,
                });
            }
        }
        let buckets_needed = self.live_chunks as usize + 1;
        let rebuild_to = if self.buckets.len() >= buckets_needed {
            None
        } else {
            let target = match self.buckets.limit() {
                Some(limit) => limit,
                None => buckets_needed.next_power_of_two().max(4),
            };
            if target < buckets_needed || self.buckets.spare() < target - self.buckets.len() {
                return Err(Error::MetadataExhausted {
                    capacity: self.buckets.limit().unwrap_or(usize::MAX),
                });
            }
            Some(target)
        };
        // 2. The chunk.
        let chunk_bytes = self.config.chunk_bytes();
        let range = upstream.allocate(chunk_bytes, DEFAULT_ALIGNMENT)?;
        debug_assert_eq!(range.len, chunk_bytes);
        // 3. Commit; nothing below can fail.
        let c = if new_slot {
            let c = self.chunks.len();
            let pushed = self.chunks.push(VACANT_CHUNK);
            let resized = self.blocks.resize((c + 1) * bpc, END);
            debug_assert!(pushed.is_ok() && resized.is_ok(), "room was checked");
            c as u32
        } else {
            let c = self.vacant_head;
            self.vacant_head = self.chunks.as_slice()[c as usize].next;
            c
        };
        let first = c as usize * bpc;
        for (i, entry) in self.blocks.as_mut_slice()[first..first + bpc]
            .iter_mut()
            .enumerate()
        {
            *entry = if i + 1 < bpc { (i + 1) as u32 } else { END };
        }
        self.chunks.as_mut_slice()[c as usize] = ChunkMeta {
            start: range.start,
            free_head: 0,
            free_count: bpc as u32,
            prev: NIL,
            next: NIL,
        };
        self.live_chunks += 1;
        match rebuild_to {
            Some(n) => self.rebuild_table(n),
            None => self.table_insert(c),
        }
        self.push_tail(c);
        Ok(range)
    }

    /// Gives every wholly free chunk back to `upstream`; returns the bytes given back.
    ///
    /// # Errors
    ///
    /// The upstream's error if it refuses a chunk (a different upstream than the one the list
    /// grew from); chunks given back before that stay given back, the refused one stays.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// use strata_core::SimUpstream;
    /// let mut up = SimUpstream::new(1 << 20);
    /// let mut list = FixedBlocks::<Heap>::new(FixedConfig::new(256, 2)?);
    /// let a = list.allocate(&mut up, 256, 256)?;
    /// let b = list.allocate(&mut up, 256, 256)?;
    /// let c = list.allocate(&mut up, 256, 256)?; // a second chunk
    /// list.deallocate(c.start, 256)?;
    /// assert_eq!(list.trim(&mut up)?, 512);
    /// assert_eq!(list.trim(&mut up)?, 0);
    /// # let _ = (a, b);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn trim<U: Upstream + ?Sized>(&mut self, upstream: &mut U) -> Result<u64, Error> {
        let bpc = self.config.blocks_per_chunk;
        let chunk_bytes = self.config.chunk_bytes();
        let mut released = 0;
        let mut result = Ok(());
        while self.open_tail != NIL {
            let c = self.open_tail;
            let chunk = self.chunks.as_slice()[c as usize];
            if chunk.free_count != bpc {
                break;
            }
            if let Err(e) = upstream.deallocate(Range::new(chunk.start, chunk_bytes)) {
                result = Err(e);
                break;
            }
            self.unlink(c);
            let slot = &mut self.chunks.as_mut_slice()[c as usize];
            slot.start = VACANT;
            slot.free_head = END;
            slot.free_count = 0;
            slot.next = self.vacant_head;
            self.vacant_head = c;
            self.live_chunks -= 1;
            released += chunk_bytes;
        }
        if released > 0 {
            let n = self.buckets.len();
            self.rebuild_table(n);
        }
        result.map(|()| released)
    }

    /// Gives every chunk back to `upstream`, live blocks or not, and forgets them all (the
    /// metadata keeps its capacity). Blocks still live dangle afterwards.
    ///
    /// # Errors
    ///
    /// The first error of the upstream; every chunk is forgotten all the same.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// let mut up = strata_core::SimUpstream::new(1 << 20);
    /// let mut list = FixedBlocks::<Heap>::new(FixedConfig::new(256, 2)?);
    /// list.allocate(&mut up, 256, 256)?;
    /// list.release_all(&mut up)?;
    /// assert_eq!((list.stats().chunks, up.in_use()), (0, 0));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn release_all<U: Upstream + ?Sized>(&mut self, upstream: &mut U) -> Result<(), Error> {
        let mut result = Ok(());
        for chunk in self.chunks() {
            if let Err(e) = upstream.deallocate(chunk) {
                result = result.and(Err(e));
            }
        }
        let _ = self.blocks.resize(0, END);
        let _ = self.chunks.resize(0, VACANT_CHUNK);
        let _ = self.buckets.resize(0, EMPTY_BUCKET);
        self.open_head = NIL;
        self.open_tail = NIL;
        self.vacant_head = NIL;
        self.live_chunks = 0;
        self.live_blocks = 0;
        self.live_units = 0;
        result
    }

    /// The counters.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// let list = FixedBlocks::<Heap>::new(FixedConfig::new(256, 2)?);
    /// assert_eq!(list.stats().live_blocks, 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn stats(&self) -> FixedStats {
        let blocks_held = u64::from(self.live_chunks) * u64::from(self.config.blocks_per_chunk);
        FixedStats {
            block_size: self.config.block_size,
            chunks: u64::from(self.live_chunks),
            upstream_bytes: u64::from(self.live_chunks) * self.config.chunk_bytes(),
            live_blocks: self.live_blocks,
            free_blocks: blocks_held - self.live_blocks,
            requested_bytes: self.live_units * DEFAULT_ALIGNMENT,
        }
    }

    /// Bytes of metadata in use: the block entries, chunk records and lookup buckets of every
    /// chunk slot created so far, plus the struct itself. (A fixed store reserves its full
    /// capacity inline; a growable one may have spare heap capacity. Neither is counted.)
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// let mut up = strata_core::SimUpstream::new(1 << 30);
    /// let mut list = FixedBlocks::<Heap>::new(FixedConfig::new(256, 128)?);
    /// list.grow(&mut up)?;
    /// let per_block = list.metadata_bytes() as f64 / 128.0;
    /// assert!(per_block < 8.0, "{per_block}"); // 4 B per block + the chunk and table share
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn metadata_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.blocks.len() * core::mem::size_of::<u32>()
            + self.chunks.len() * core::mem::size_of::<ChunkMeta>()
            + self.buckets.len() * core::mem::size_of::<LookupBucket>()
    }

    /// Iterates over the ranges of the chunks held from the upstream, in slot order.
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// let mut up = strata_core::SimUpstream::new(1 << 20);
    /// let mut list = FixedBlocks::<Heap>::new(FixedConfig::new(256, 2)?);
    /// let r = list.grow(&mut up)?;
    /// assert_eq!(list.chunks().collect::<Vec<_>>(), vec![r]);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn chunks(&self) -> impl Iterator<Item = Range> + '_ {
        let chunk_bytes = self.config.chunk_bytes();
        self.chunks
            .as_slice()
            .iter()
            .filter(|c| c.start != VACANT)
            .map(move |c| Range::new(c.start, chunk_bytes))
    }

    /// Checks every invariant of the metadata (O(blocks)); for tests and debugging.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant (a bug in strata).
    ///
    /// ```
    /// use strata_core::algo::{FixedBlocks, FixedConfig, Heap};
    /// let mut up = strata_core::SimUpstream::new(1 << 20);
    /// let mut list = FixedBlocks::<Heap>::new(FixedConfig::new(256, 4)?);
    /// list.allocate(&mut up, 256, 256)?;
    /// assert_eq!(list.audit(), Ok(()));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn audit(&self) -> Result<(), &'static str> {
        let bpc = self.config.blocks_per_chunk;
        let chunks = self.chunks.as_slice();
        let blocks = self.blocks.as_slice();
        if blocks.len() != chunks.len() * bpc as usize {
            return Err("block entries do not match chunk slots");
        }
        let (mut live_chunks, mut live_blocks, mut live_units) = (0u32, 0u64, 0u64);
        for (c, chunk) in chunks.iter().enumerate() {
            if chunk.start == VACANT {
                continue;
            }
            live_chunks += 1;
            let found = Some((c as u32, chunk.start));
            if self.find_chunk(chunk.start) != found
                || self.find_chunk(chunk.start + self.config.chunk_bytes() - 1) != found
            {
                return Err("lookup table does not find a chunk");
            }
            let entries = &blocks[c * bpc as usize..(c + 1) * bpc as usize];
            let mut at = chunk.free_head;
            for _ in 0..chunk.free_count {
                if at >= bpc || entries[at as usize] & ALLOCATED != 0 {
                    return Err("free list links a bad entry");
                }
                at = entries[at as usize];
            }
            if at != END {
                return Err("free list longer than free_count, or cyclic");
            }
            let mut allocated = 0;
            for &e in entries {
                if e & ALLOCATED != 0 {
                    allocated += 1;
                    live_units += u64::from((e & !ALLOCATED) + 1);
                    if u64::from((e & !ALLOCATED) + 1) * DEFAULT_ALIGNMENT > self.config.block_size
                    {
                        return Err("a live block records a size above the block size");
                    }
                }
            }
            if allocated + chunk.free_count != bpc {
                return Err("free_count does not match the entries");
            }
            live_blocks += u64::from(allocated);
        }
        if (live_chunks, live_blocks, live_units)
            != (self.live_chunks, self.live_blocks, self.live_units)
        {
            return Err("counters do not match the entries");
        }
        if self.buckets.len() < live_chunks as usize {
            return Err("fewer buckets than chunks");
        }
        // Open list: exactly the chunks with a free block, partial ones first.
        let (mut at, mut prev, mut seen, mut wholly_free_seen) = (self.open_head, NIL, 0, false);
        while at != NIL {
            if seen > chunks.len() {
                return Err("open list is cyclic");
            }
            let chunk = chunks[at as usize];
            if chunk.start == VACANT || chunk.free_count == 0 || chunk.prev != prev {
                return Err("open list links a bad chunk");
            }
            if chunk.free_count == bpc {
                wholly_free_seen = true;
            } else if wholly_free_seen {
                return Err("a partially free chunk after a wholly free one");
            }
            seen += 1;
            prev = at;
            at = chunk.next;
        }
        if prev != self.open_tail {
            return Err("open list tail is wrong");
        }
        let with_free = chunks
            .iter()
            .filter(|c| c.start != VACANT && c.free_count > 0)
            .count();
        if seen != with_free {
            return Err("open list misses a chunk with free blocks");
        }
        let (mut at, mut vacant) = (self.vacant_head, 0);
        while at != NIL {
            if vacant > chunks.len() || chunks[at as usize].start != VACANT {
                return Err("vacant list is broken");
            }
            vacant += 1;
            at = chunks[at as usize].next;
        }
        if vacant + live_chunks as usize != chunks.len() {
            return Err("vacant list misses a slot");
        }
        Ok(())
    }

    fn push_head(&mut self, c: u32) {
        let old = self.open_head;
        let chunks = self.chunks.as_mut_slice();
        chunks[c as usize].prev = NIL;
        chunks[c as usize].next = old;
        if old == NIL {
            self.open_tail = c;
        } else {
            chunks[old as usize].prev = c;
        }
        self.open_head = c;
    }

    fn push_tail(&mut self, c: u32) {
        let old = self.open_tail;
        let chunks = self.chunks.as_mut_slice();
        chunks[c as usize].next = NIL;
        chunks[c as usize].prev = old;
        if old == NIL {
            self.open_head = c;
        } else {
            chunks[old as usize].next = c;
        }
        self.open_tail = c;
    }

    fn unlink(&mut self, c: u32) {
        let chunks = self.chunks.as_mut_slice();
        let ChunkMeta { prev, next, .. } = chunks[c as usize];
        if prev == NIL {
            debug_assert_eq!(self.open_head, c);
            self.open_head = next;
        } else {
            chunks[prev as usize].next = next;
        }
        if next == NIL {
            debug_assert_eq!(self.open_tail, c);
            self.open_tail = prev;
        } else {
            chunks[next as usize].prev = prev;
        }
        chunks[c as usize].prev = NIL;
        chunks[c as usize].next = NIL;
    }

    /// Enters live chunk `c` under the granules it touches. The table must have room.
    fn table_insert(&mut self, c: u32) {
        let start = self.chunks.as_slice()[c as usize].start;
        let first = start >> self.granule_shift;
        let last = (start + (self.config.chunk_bytes() - 1)) >> self.granule_shift;
        debug_assert!(last - first <= 1, "a chunk touches at most two granules");
        self.table_put(first, c);
        if last != first {
            self.table_put(last, c);
        }
    }

    fn table_put(&mut self, granule: u64, c: u32) {
        let start = self.chunks.as_slice()[c as usize].start;
        let buckets = self.buckets.as_mut_slice();
        let n = buckets.len();
        let mut b = bucket_index(granule, n);
        for _ in 0..n {
            let bucket = &mut buckets[b];
            if let Some(j) = bucket.slots.iter().position(|&s| s == NIL) {
                bucket.slots[j] = c;
                bucket.starts[j] = start;
                return;
            }
            b = if b + 1 == n { 0 } else { b + 1 };
        }
        debug_assert!(false, "fixed list lookup table is full");
    }

    /// Rebuilds the lookup table with `n` buckets (room checked by the caller).
    fn rebuild_table(&mut self, n: usize) {
        let resized = self.buckets.resize(n, EMPTY_BUCKET);
        debug_assert!(resized.is_ok(), "room was checked");
        for bucket in self.buckets.as_mut_slice() {
            *bucket = EMPTY_BUCKET;
        }
        for c in 0..self.chunks.len() {
            if self.chunks.as_slice()[c].start != VACANT {
                self.table_insert(c as u32);
            }
        }
    }
}

/// The bucket of `granule` in a table of `n` buckets: a multiplicative hash, mapped onto
/// `0..n` by its high bits.
#[inline]
fn bucket_index(granule: u64, n: usize) -> usize {
    ((u128::from(granule.wrapping_mul(HASH_MUL)) * n as u128) >> 64) as usize
}

/// A fixed-size block list that owns its upstream: [`FixedBlocks`] plus the upstream.
///
/// RMM's `fixed_size_memory_resource`, as a single-threaded algorithm: blocks of one size
/// (rounded up to 256 bytes) cut from chunks of `block_size × blocks_per_chunk` bytes, one
/// chunk taken from the upstream at a time; requests up to the block size are served, larger
/// ones fail with [`Error::TooLarge`]. O(1) allocate and free; frees are validated; wholly free
/// chunks go back with [`trim`](Self::trim).
///
/// ```
/// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
/// use strata_core::{SimUpstream, Error};
/// let mut list: FixedSizeList<_, Heap> =
///     FixedSizeList::new(SimUpstream::new(256 << 20), FixedConfig::DEFAULT);
/// let a = list.allocate(1 << 20, 256)?;
/// assert_eq!(list.allocate((1 << 20) + 1, 256), Err(Error::TooLarge { requested: (1 << 20) + 1, max: 1 << 20 }));
/// list.deallocate(a.start, a.len)?;
/// # Ok::<(), Error>(())
/// ```
pub struct FixedSizeList<U: Upstream, M: MetaStorage> {
    upstream: U,
    blocks: FixedBlocks<M>,
}

impl<U: Upstream + fmt::Debug, M: MetaStorage> fmt::Debug for FixedSizeList<U, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedSizeList")
            .field("upstream", &self.upstream)
            .field("blocks", &self.blocks)
            .finish()
    }
}

impl<U: Upstream, M: MetaStorage> FixedSizeList<U, M> {
    /// A list over `upstream`. Takes nothing from the upstream yet: call
    /// [`grow`](Self::grow) to preallocate. A `const fn`, like [`FixedBlocks::new`].
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap, Inline};
    /// use strata_core::SimUpstream;
    /// let list: FixedSizeList<_, Inline<256, 2>> =
    ///     FixedSizeList::new(SimUpstream::new(1 << 30), FixedConfig::DEFAULT);
    /// assert_eq!(list.stats().chunks, 0);
    /// let list: FixedSizeList<_, Heap> = FixedSizeList::new(SimUpstream::new(1 << 30), FixedConfig::DEFAULT);
    /// assert_eq!(list.config(), FixedConfig::DEFAULT);
    /// ```
    pub const fn new(upstream: U, config: FixedConfig) -> Self {
        Self {
            upstream,
            blocks: FixedBlocks::new(config),
        }
    }

    /// The configuration.
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
    /// let list: FixedSizeList<_, Heap> =
    ///     FixedSizeList::new(strata_core::SimUpstream::new(1 << 30), FixedConfig::new(256, 8)?);
    /// assert_eq!(list.config().chunk_bytes(), 2048);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn config(&self) -> FixedConfig {
        self.blocks.config()
    }

    /// Allocates a block for `size` bytes; see [`FixedBlocks::allocate`].
    ///
    /// # Errors
    ///
    /// As [`FixedBlocks::allocate`]; nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
    /// let mut list: FixedSizeList<_, Heap> =
    ///     FixedSizeList::new(strata_core::SimUpstream::new(1 << 20), FixedConfig::new(256, 8)?);
    /// assert_eq!(list.allocate(1, 1)?.len, 256);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        self.blocks.allocate(&mut self.upstream, size, align)
    }

    /// Frees a block; see [`FixedBlocks::deallocate`].
    ///
    /// # Errors
    ///
    /// As [`FixedBlocks::deallocate`]; nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
    /// use strata_core::Error;
    /// let mut list: FixedSizeList<_, Heap> =
    ///     FixedSizeList::new(strata_core::SimUpstream::new(1 << 20), FixedConfig::new(256, 8)?);
    /// assert_eq!(list.deallocate(4096, 256), Err(Error::NotAllocated { addr: 4096 }));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn deallocate(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        self.blocks.deallocate(addr, size)
    }

    /// Takes one more chunk from the upstream; see [`FixedBlocks::grow`].
    ///
    /// # Errors
    ///
    /// As [`FixedBlocks::grow`]; nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
    /// let mut list: FixedSizeList<_, Heap> =
    ///     FixedSizeList::new(strata_core::SimUpstream::new(1 << 20), FixedConfig::new(256, 8)?);
    /// list.grow()?;
    /// assert_eq!(list.stats().free_blocks, 8);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn grow(&mut self) -> Result<Range, Error> {
        self.blocks.grow(&mut self.upstream)
    }

    /// Gives wholly free chunks back to the upstream; see [`FixedBlocks::trim`].
    ///
    /// # Errors
    ///
    /// As [`FixedBlocks::trim`].
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
    /// let mut list: FixedSizeList<_, Heap> =
    ///     FixedSizeList::new(strata_core::SimUpstream::new(1 << 20), FixedConfig::new(256, 8)?);
    /// list.grow()?;
    /// assert_eq!(list.trim()?, 2048);
    /// assert_eq!(list.upstream().in_use(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn trim(&mut self) -> Result<u64, Error> {
        self.blocks.trim(&mut self.upstream)
    }

    /// The counters; see [`FixedStats`].
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
    /// let list: FixedSizeList<_, Heap> =
    ///     FixedSizeList::new(strata_core::SimUpstream::new(1 << 20), FixedConfig::new(256, 8)?);
    /// assert_eq!(list.stats().upstream_bytes, 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn stats(&self) -> FixedStats {
        self.blocks.stats()
    }

    /// The upstream.
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
    /// let list: FixedSizeList<_, Heap> =
    ///     FixedSizeList::new(strata_core::SimUpstream::new(1 << 20), FixedConfig::new(256, 8)?);
    /// assert_eq!(list.upstream().capacity(), 1 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// The algorithm (for [`FixedBlocks::audit`], [`FixedBlocks::metadata_bytes`],
    /// [`FixedBlocks::contains`], [`FixedBlocks::chunks`]); its chunks belong to
    /// [`upstream`](Self::upstream).
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
    /// let list: FixedSizeList<_, Heap> =
    ///     FixedSizeList::new(strata_core::SimUpstream::new(1 << 20), FixedConfig::new(256, 8)?);
    /// assert!(list.blocks().audit().is_ok());
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn blocks(&self) -> &FixedBlocks<M> {
        &self.blocks
    }

    /// Gives every chunk back to the upstream, live blocks or not, and forgets them. Blocks
    /// still live dangle afterwards. [`Drop`] does this too.
    ///
    /// # Errors
    ///
    /// The first error of the upstream; every chunk is forgotten all the same.
    ///
    /// ```
    /// use strata_core::algo::{FixedConfig, FixedSizeList, Heap};
    /// let mut list: FixedSizeList<_, Heap> =
    ///     FixedSizeList::new(strata_core::SimUpstream::new(1 << 20), FixedConfig::new(256, 8)?);
    /// list.allocate(256, 256)?;
    /// list.release_all()?;
    /// assert_eq!((list.stats().chunks, list.upstream().in_use()), (0, 0));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn release_all(&mut self) -> Result<(), Error> {
        self.blocks.release_all(&mut self.upstream)
    }
}

impl<U: Upstream, M: MetaStorage> Drop for FixedSizeList<U, M> {
    /// Gives every chunk back to the upstream, ignoring its errors.
    fn drop(&mut self) {
        let _ = self.release_all();
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::SimUpstream;

    type Small = FixedBlocks<Inline<64, 8>>;

    fn snapshot<M: MetaStorage>(l: &FixedBlocks<M>) -> (FixedStats, alloc::vec::Vec<Range>) {
        (l.stats(), l.chunks().collect())
    }

    #[test]
    fn config_rounds_and_rejects() {
        assert_eq!(FixedConfig::new(1, 1).unwrap().block_size(), 256);
        assert_eq!(FixedConfig::new(256, 0), Err(Error::ZeroSize));
        assert_eq!(
            FixedConfig::new(MAX_BLOCK_SIZE + 1, 1),
            Err(Error::TooLarge {
                requested: MAX_BLOCK_SIZE + 1,
                max: MAX_BLOCK_SIZE
            })
        );
        assert_eq!(
            FixedConfig::new(256, MAX_BLOCKS_PER_CHUNK + 1),
            Err(Error::TooLarge {
                requested: u64::from(MAX_BLOCKS_PER_CHUNK) + 1,
                max: u64::from(MAX_BLOCKS_PER_CHUNK)
            })
        );
        assert_eq!(
            FixedConfig::new(MAX_BLOCK_SIZE, MAX_BLOCKS_PER_CHUNK),
            Err(Error::SizeOverflow {
                requested: MAX_BLOCK_SIZE
            })
        );
        assert_eq!(FixedConfig::default(), FixedConfig::DEFAULT);
    }

    #[test]
    fn blocks_are_distinct_aligned_and_inside_chunks() {
        let mut up = SimUpstream::new(1 << 30);
        let mut l = Small::new(FixedConfig::new(768, 4).unwrap());
        let mut got: alloc::vec::Vec<Range> = (0..16)
            .map(|_| l.allocate(&mut up, 768, 256).unwrap())
            .collect();
        got.sort();
        for w in got.windows(2) {
            assert!(w[0].end() <= w[1].start);
        }
        for r in &got {
            assert_eq!(r.start % 256, 0);
            assert!(l.contains(r.start));
        }
        assert_eq!(l.stats().chunks, 4);
        assert_eq!(up.in_use(), 4 * 4 * 768);
        l.audit().unwrap();
    }

    #[test]
    fn bad_requests_change_nothing() {
        let mut up = SimUpstream::new(1 << 20);
        let mut l = Small::new(FixedConfig::new(512, 4).unwrap());
        let a = l.allocate(&mut up, 512, 256).unwrap();
        let before = snapshot(&l);
        assert_eq!(l.allocate(&mut up, 0, 256), Err(Error::ZeroSize));
        assert_eq!(
            l.allocate(&mut up, 256, 3),
            Err(Error::InvalidAlignment { align: 3 })
        );
        assert_eq!(
            l.allocate(&mut up, 256, 512),
            Err(Error::InvalidAlignment { align: 512 })
        );
        assert_eq!(
            l.allocate(&mut up, 513, 256),
            Err(Error::TooLarge {
                requested: 513,
                max: 512
            })
        );
        assert_eq!(l.try_allocate(0, 256), Err(Error::ZeroSize));
        assert_eq!(snapshot(&l), before);
        l.audit().unwrap();
        let _ = a;
    }

    #[test]
    fn bad_frees_change_nothing() {
        let mut up = SimUpstream::new(1 << 20);
        let mut l = Small::new(FixedConfig::new(512, 4).unwrap());
        let a = l.allocate(&mut up, 300, 256).unwrap();
        let b = l.allocate(&mut up, 512, 256).unwrap();
        l.deallocate(b.start, 512).unwrap();
        let before = snapshot(&l);
        // Foreign address (below, above, far away).
        for addr in [0, a.start - 1, a.start + 4 * 512, u64::MAX] {
            assert_eq!(l.deallocate(addr, 300), Err(Error::NotAllocated { addr }));
        }
        // Misaligned inside a chunk.
        assert_eq!(
            l.deallocate(a.start + 256, 256),
            Err(Error::NotAllocated {
                addr: a.start + 256
            })
        );
        // Double free, and a never-allocated block.
        assert_eq!(
            l.deallocate(b.start, 512),
            Err(Error::DoubleFree { addr: b.start })
        );
        let never = a.start + 3 * 512;
        assert_eq!(
            l.deallocate(never, 512),
            Err(Error::DoubleFree { addr: never })
        );
        // Wrong sizes.
        for size in [0, 1, 256, 513, u64::MAX] {
            assert_eq!(
                l.deallocate(a.start, size),
                Err(Error::SizeMismatch {
                    addr: a.start,
                    allocated: 512,
                    given: size
                })
            );
        }
        assert_eq!(snapshot(&l), before);
        l.audit().unwrap();
        l.deallocate(a.start, 257).unwrap();
        assert_eq!(l.stats().live_blocks, 0);
    }

    #[test]
    fn metadata_exhaustion_is_an_error_before_the_upstream_is_called() {
        let mut up = SimUpstream::new(1 << 30);
        // Room for 2 chunks of 4 blocks by block count, 3 by chunk count.
        let mut l = FixedBlocks::<Inline<8, 3>>::new(FixedConfig::new(256, 4).unwrap());
        for _ in 0..8 {
            l.allocate(&mut up, 256, 256).unwrap();
        }
        let before = (snapshot(&l), up.in_use());
        assert_eq!(
            l.allocate(&mut up, 256, 256),
            Err(Error::MetadataExhausted { capacity: 8 })
        );
        assert_eq!((snapshot(&l), up.in_use()), before);
        // By chunk count.
        let mut l = FixedBlocks::<Inline<64, 2>>::new(FixedConfig::new(256, 1).unwrap());
        l.grow(&mut up).unwrap();
        l.grow(&mut up).unwrap();
        assert_eq!(
            l.grow(&mut up),
            Err(Error::MetadataExhausted { capacity: 2 })
        );
        l.audit().unwrap();
    }

    #[test]
    fn upstream_failure_changes_nothing() {
        let mut up = SimUpstream::new(1024);
        let mut l = Small::new(FixedConfig::new(512, 2).unwrap());
        l.allocate(&mut up, 512, 256).unwrap();
        l.allocate(&mut up, 512, 256).unwrap();
        let before = snapshot(&l);
        assert!(matches!(
            l.allocate(&mut up, 512, 256),
            Err(Error::OutOfMemory { .. })
        ));
        assert_eq!(snapshot(&l), before);
        l.audit().unwrap();
    }

    #[test]
    fn trim_returns_only_wholly_free_chunks_and_slots_are_reused() {
        let mut up = SimUpstream::new(1 << 30);
        let mut l = FixedBlocks::<Heap>::new(FixedConfig::new(256, 2).unwrap());
        let blocks: alloc::vec::Vec<Range> = (0..6)
            .map(|_| l.allocate(&mut up, 256, 256).unwrap())
            .collect();
        // Chunks: {0,1}, {2,3}, {4,5}. Empty the first and the last, half the middle one.
        for i in [0, 1, 2, 4, 5] {
            l.deallocate(blocks[i].start, 256).unwrap();
            l.audit().unwrap();
        }
        assert_eq!(l.trim(&mut up).unwrap(), 1024);
        assert_eq!(l.stats().chunks, 1);
        assert_eq!(up.in_use(), 512);
        assert!(!l.contains(blocks[0].start));
        assert_eq!(
            l.deallocate(blocks[0].start, 256),
            Err(Error::NotAllocated {
                addr: blocks[0].start
            })
        );
        l.audit().unwrap();
        // Allocation prefers the partial chunk, then reuses a vacant slot.
        let again = l.allocate(&mut up, 256, 256).unwrap();
        assert_eq!(again, blocks[2]);
        l.allocate(&mut up, 256, 256).unwrap();
        assert_eq!(l.stats().chunks, 2);
        assert_eq!(l.chunks.len(), 3, "a vacant slot was reused");
        l.audit().unwrap();
    }

    #[test]
    fn trim_stops_at_a_refusing_upstream() {
        let mut up = SimUpstream::new(1 << 30);
        let mut other = SimUpstream::new(1 << 30);
        let mut l = Small::new(FixedConfig::new(256, 1).unwrap());
        l.grow(&mut up).unwrap();
        let before = snapshot(&l);
        assert!(matches!(
            l.trim(&mut other),
            Err(Error::NotAllocated { .. })
        ));
        assert_eq!(snapshot(&l), before);
        assert_eq!(l.trim(&mut up).unwrap(), 256);
        l.audit().unwrap();
    }

    #[test]
    fn lookup_survives_table_growth_and_odd_block_sizes() {
        let mut up = SimUpstream::new(1 << 40);
        let mut l = FixedBlocks::<Heap>::new(FixedConfig::new(768, 3).unwrap());
        let mut live = alloc::vec::Vec::new();
        for _ in 0..3000 {
            live.push(l.allocate(&mut up, 700, 256).unwrap());
        }
        l.audit().unwrap();
        for r in live.iter().step_by(2) {
            l.deallocate(r.start, r.len).unwrap();
        }
        l.audit().unwrap();
        assert_eq!(l.stats().live_blocks, 1500);
        assert!(l.metadata_bytes() / 3000 <= 64);
    }

    #[test]
    fn try_allocate_uses_free_blocks_only() {
        let mut up = SimUpstream::new(1 << 20);
        let mut l = Small::new(FixedConfig::new(256, 2).unwrap());
        assert_eq!(l.try_allocate(256, 256), Ok(None));
        l.grow(&mut up).unwrap();
        assert!(l.try_allocate(256, 256).unwrap().is_some());
        assert!(l.try_allocate(256, 256).unwrap().is_some());
        assert_eq!(l.try_allocate(256, 256), Ok(None));
        l.audit().unwrap();
    }

    #[test]
    fn drop_and_release_all_give_every_chunk_back() {
        let mut up = SimUpstream::new(1 << 20);
        {
            let mut list: FixedSizeList<&mut SimUpstream, Heap> =
                FixedSizeList::new(&mut up, FixedConfig::new(256, 2).unwrap());
            for _ in 0..3 {
                list.allocate(256, 256).unwrap();
            }
            assert_eq!(list.upstream().in_use(), 1024);
        }
        assert_eq!(up.in_use(), 0);
        let mut l = Small::new(FixedConfig::new(256, 2).unwrap());
        let a = l.allocate(&mut up, 256, 256).unwrap();
        l.release_all(&mut up).unwrap();
        assert_eq!(up.in_use(), 0);
        assert_eq!(
            l.deallocate(a.start, 256),
            Err(Error::NotAllocated { addr: a.start })
        );
        l.audit().unwrap();
        // Usable again afterwards.
        l.allocate(&mut up, 256, 256).unwrap();
        l.audit().unwrap();
    }

    #[test]
    fn single_block_chunks_cycle_through_the_open_list() {
        let mut up = SimUpstream::new(1 << 20);
        let mut l = Small::new(FixedConfig::new(256, 1).unwrap());
        let a = l.allocate(&mut up, 256, 256).unwrap();
        let b = l.allocate(&mut up, 256, 256).unwrap();
        l.deallocate(a.start, 256).unwrap();
        l.audit().unwrap();
        l.deallocate(b.start, 256).unwrap();
        l.audit().unwrap();
        assert_eq!(l.trim(&mut up).unwrap(), 512);
        assert_eq!(up.in_use(), 0);
        l.audit().unwrap();
    }
}
