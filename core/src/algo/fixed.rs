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
//! (defaults: 1 MiB blocks, 128 blocks per chunk, see [`FixedConfig::DEFAULT`]), and the free
//! blocks form one LIFO stack, so the block freed last is handed out first. Unlike RMM, every
//! free is validated, and wholly free chunks can be given back ([`FixedBlocks::trim`]).
//!
//! # Metadata
//!
//! The metadata lives in a [`MetaStorage`]: [`Inline<BLOCKS, CHUNKS>`] keeps it in fixed arrays
//! (no heap; `const fn new`, so a list can live in a `static`), [`Heap`] (feature `alloc`) in
//! growable vectors. Per block it is one `u32` (a free-stack link, or the allocated flag and
//! the request size in 256-byte units); per chunk a 16-byte record and `r` 64-byte buckets of
//! the address lookup table, where `1 <= r < 2` with growable metadata (the table has a power
//! of two of buckets, at least one per chunk) and `r <= 1` inline. A block therefore costs
//! `4 + (16 + 64 r) / blocks_per_chunk` bytes: 4.6 to 5.1 at the default 128 blocks per chunk,
//! at most 52 from 3 blocks per chunk up, and up to 76 at 2 and 148 at 1 (the only shapes that
//! can exceed 64). See [`FixedBlocks::metadata_bytes`].
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

use crate::{DEFAULT_ALIGNMENT, Error, Range, Upstream, align_up};

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
/// [`MetaStorage`] names it): up to [`BUCKET_SLOTS`] chunks, by increasing start address,
/// each with its start and the index of its first block kept inline so that a lookup reads
/// one cache line.
///
/// ```
/// assert_eq!(core::mem::size_of::<strata_core::algo::LookupBucket>(), 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct LookupBucket {
    /// Start of each entry's chunk, increasing; `u64::MAX` (where no chunk starts) for an
    /// empty entry. The used entries come first.
    starts: [u64; BUCKET_SLOTS],
    /// Index of the first block of each entry's chunk (chunk slot × blocks per chunk), or
    /// `NIL` for an empty entry.
    firsts: [u32; BUCKET_SLOTS],
}

impl LookupBucket {
    /// The first block index and start of this bucket's chunk that contains `addr`, if any.
    ///
    /// Chunks are disjoint, so the only one that can contain `addr` is the last to start at
    /// or below it: the starts are sorted, count them. (Empty entries start at u64::MAX,
    /// counted only for that address, which no chunk holds.)
    #[inline(always)]
    fn find(&self, addr: u64, chunk_bytes: u64) -> Option<(u32, u64)> {
        let mut below = 0;
        for j in 0..BUCKET_SLOTS {
            below += usize::from(self.starts[j] <= addr);
        }
        if below == 0 {
            return None;
        }
        let j = (below - 1) & (BUCKET_SLOTS - 1);
        let (start, first) = (self.starts[j], self.firsts[j]);
        (addr - start < chunk_bytes && first != NIL).then_some((first, start))
    }

    /// Whether every entry is used.
    #[inline(always)]
    fn is_full(&self) -> bool {
        self.firsts[BUCKET_SLOTS - 1] != NIL
    }
}

/// A bucket with no entry.
const EMPTY_BUCKET: LookupBucket = LookupBucket {
    starts: [u64::MAX; BUCKET_SLOTS],
    firsts: [NIL; BUCKET_SLOTS],
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
/// Block entry of the free block at the bottom of the free stack, and `free_head` of an empty
/// stack. Block indices stay below it, so a list holds at most `END` blocks.
const END: u32 = ALLOCATED - 1;
/// The `start` of a vacant chunk slot.
const VACANT: u64 = u64::MAX;
/// A vacant chunk slot.
const VACANT_CHUNK: ChunkMeta = ChunkMeta {
    start: VACANT,
    free: 0,
    next: NIL,
};
/// Multiplier of the lookup table's hash (2^64 / golden ratio).
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// `(m, s)` such that `n / d == (n * m) >> s` for every `n < 2^31`: the chunk slot of a block
/// index, with no division.
///
/// Granlund and Montgomery's bound: with `l = ceil(log2 d)`, `s = 31 + l` and
/// `m = ceil(2^s / d)`, the error `e = m d - 2^s` is below `d <= 2^l`; writing `n = q d + r`,
/// `n m / 2^s = q + (r + n e / 2^s) / d` and `n e / 2^s < 2^31 2^l / 2^(31 + l) = 1`, so the
/// fraction stays below `(r + 1) / d <= 1` and the floor is `q`. `m < 2^32 + 1`, so `n m`
/// fits in 64 bits.
const fn index_divider(d: u32) -> (u64, u32) {
    let l = u32::BITS - (d - 1).leading_zeros();
    let s = 31 + l;
    ((1u64 << s).div_ceil(d as u64), s)
}

/// `(m, s)` such that `n / d == (n * m) >> s` (in 128 bits) for every `n < 2^62` and
/// `1 <= d <= 2^39`: the block of an offset in a chunk (chunks are at most 2^62 bytes), with
/// no division. The bound of [`index_divider`] with 62 for 31; `m <= 2^63` and `s <= 101`.
const fn offset_divider(d: u64) -> (u64, u32) {
    let l = u64::BITS - (d - 1).leading_zeros();
    let s = 62 + l;
    ((1u128 << s).div_ceil(d as u128) as u64, s)
}

/// `size` in 256-byte units, rounded up, in two instructions: `size.div_ceil(256)`, except
/// that the sum wraps for the 255 sizes closest to `u64::MAX`, which give 0 units.
#[inline(always)]
const fn units_of(size: u64) -> u64 {
    size.wrapping_add(DEFAULT_ALIGNMENT - 1) >> DEFAULT_ALIGNMENT.trailing_zeros()
}

/// The `hash_shift` of a table of `n` buckets (a power of two).
const fn hash_shift_for(n: usize) -> u32 {
    if n <= 1 { 63 } else { 64 - n.trailing_zeros() }
}

/// The largest power of two `<= n`, or 0.
const fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

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
/// assert_eq!(core::mem::size_of::<strata_core::algo::ChunkMeta>(), 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// First address of the chunk, or `VACANT`.
    start: u64,
    /// Scratch of [`FixedBlocks::trim`]: the chunk's free blocks, counted there.
    free: u32,
    /// Next slot in the vacant list (when vacant), or `NIL`.
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
///   (`bpc` = blocks per chunk); a block's *index* is the position of its entry. An entry is
///   either `ALLOCATED | (units - 1)` (a live block and its request size in 256-byte units) or
///   the index of the next free block (`END` for the last).
/// - The free blocks of all chunks form one stack (LIFO), linked through their entries from
///   `free_head`: a free pushes the block, an allocation pops the block freed last, whose entry
///   (and memory) is the most likely to be in cache. The stack links exactly the free blocks
///   of the live chunks, each once.
/// - The lookup table maps an address to its chunk in O(1): with `G` the smallest power of two
///   `>= chunk_bytes`, each chunk is entered under the (at most two) `G`-granules it touches;
///   buckets of [`BUCKET_SLOTS`] (chunk start, first block index) entries, sorted by start,
///   are probed linearly from the granule's hash. Chunks are disjoint, so the one that can
///   hold an address is the last in its bucket to start at or below it: a count of starts, not
///   a range test per entry. There are a power of two of buckets, at least half as many as
///   entries with growable metadata (as many as fit inline), and always an empty entry, so a
///   probe ends, and a lookup almost always reads one bucket: one cache line.
///
/// - *Run mode*: while every chunk slot is live and the chunks' starts step by one power of
///   two (at least `chunk_bytes`) in slot order, as they do when the upstream hands out
///   consecutive ranges, an address's chunk is `(addr - base) >> shift`: no memory access.
///   Any other chunk ends the run (the table, always kept, serves from then on); a run
///   restarts when the first chunk or the last vacant slot is taken and the chunks line up.
///
/// Allocation is O(1) (plus one upstream call when no block is free); free is O(1); growing is
/// O(`bpc`), plus O(chunks) when the table is rebuilt; [`trim`](Self::trim) is O(free blocks +
/// chunks). A block's chunk slot comes from its index by a multiplication, and its place in
/// the chunk from its offset by a shift (a multiplication for block sizes that are not a
/// power of two): no division on the hot paths.
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
    /// Index of the block freed last (the top of the free stack), or `END`.
    free_head: u32,
    /// `log2(block_size)` when it is a power of two, else 63.
    block_shift: u32,
    /// `log2` of the smallest power of two `>= chunk_bytes` (the lookup granule).
    granule_shift: u32,
    /// Granule `g` hashes to bucket `((g × HASH_MUL) >> hash_shift) & (buckets - 1)`:
    /// `64 - log2(buckets)`, or 63 for one bucket (the mask makes it 0).
    hash_shift: u32,
    /// Used entries of the lookup table (one or two per chunk).
    entries: u32,
    /// `block_size - 1` when the block size is a power of two, else `u64::MAX`: an offset in a
    /// chunk with none of these bits set is block `offset >> block_shift` (for other block
    /// sizes only offset 0 passes, block 0; the others take [`offset_divider`]).
    block_mask: u64,
    /// The chunk slot of block index `i` is `(i × slot_mul) >> slot_shift` ([`index_divider`]).
    slot_mul: u64,
    slot_shift: u32,
    /// For block sizes that are not a power of two: block `(o × offset_mul) >> offset_shift`
    /// (128-bit product) of a chunk holds offset `o` ([`offset_divider`]).
    offset_shift: u32,
    offset_mul: u64,
    /// `block_size × blocks_per_chunk`.
    chunk_bytes: u64,
    /// Run mode, when `run_len > 0`: every chunk slot is live and slot `c` starts at
    /// `run_base + (c << run_shift)` (a power-of-two stride of at least `chunk_bytes`), so
    /// [`find_chunk`](Self::find_chunk) computes an address's chunk with no memory access.
    /// `run_len` is then the number of slots; 0 otherwise (the table serves).
    run_len: u32,
    run_shift: u32,
    run_base: u64,
    /// Whether run mode may be used ([`Binning`](super::Binning)'s bins do without, so that
    /// every bin takes the same path).
    runs: bool,
    config: FixedConfig,
    blocks: M::Blocks,
    chunks: M::Chunks,
    buckets: M::Buckets,
    /// Head of the list of vacant chunk slots, or `NIL`.
    vacant_head: u32,
    live_chunks: u32,
    /// Live blocks (at most `END`; 32 bits also keeps its update apart from `live_units`'s).
    live_blocks: u32,
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
        let (slot_mul, slot_shift) = index_divider(config.blocks_per_chunk);
        let (offset_mul, offset_shift) = offset_divider(block_size);
        FixedBlocks {
            free_head: END,
            block_shift: if block_size.is_power_of_two() {
                block_size.trailing_zeros()
            } else {
                63
            },
            granule_shift: config.chunk_bytes().next_power_of_two().trailing_zeros(),
            hash_shift: 63,
            entries: 0,
            block_mask: if block_size.is_power_of_two() {
                block_size - 1
            } else {
                u64::MAX
            },
            slot_mul,
            slot_shift,
            offset_shift,
            offset_mul,
            chunk_bytes: config.chunk_bytes(),
            run_len: 0,
            run_shift: 0,
            run_base: 0,
            runs: true,
            config,
            blocks: M::Blocks::EMPTY,
            chunks: M::Chunks::EMPTY,
            buckets: M::Buckets::EMPTY,
            vacant_head: NIL,
            live_chunks: 0,
            live_blocks: 0,
            live_units: 0,
        }
    }

    /// The list with run mode off: every lookup uses the table (for lists that share an
    /// upstream, like binning's bins, whose chunks rarely form a run).
    pub(super) const fn without_runs(mut self) -> Self {
        self.runs = false;
        self
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
    #[inline(always)]
    fn request_units(&self, size: u64, align: u64) -> Result<u32, Error> {
        // One test for the usual request: 1 <= size <= block_size, align a power of two <= 256.
        let size_ok = size.wrapping_sub(1) < self.config.block_size;
        let align_ok = align.wrapping_sub(1) < DEFAULT_ALIGNMENT && align & (align - 1) == 0;
        if size_ok & align_ok {
            // size <= block_size <= 2^39: no overflow, and at most 2^31 units.
            Ok(units_of(size) as u32)
        } else {
            Err(self.request_error(size, align))
        }
    }

    /// The error of a request that [`request_units`](Self::request_units) turned down.
    #[cold]
    #[inline(never)]
    fn request_error(&self, size: u64, align: u64) -> Error {
        if size == 0 {
            Error::ZeroSize
        } else if !align.is_power_of_two() || align > DEFAULT_ALIGNMENT {
            Error::InvalidAlignment { align }
        } else {
            debug_assert!(size > self.config.block_size);
            Error::TooLarge {
                requested: size,
                max: self.config.block_size,
            }
        }
    }

    /// Allocates one block for a request of `size` bytes aligned to `align`, taking a new chunk
    /// from `upstream` when no block is free.
    ///
    /// Returns `size` rounded up to 256 bytes at the block's address (the block itself is
    /// [`FixedConfig::block_size`] bytes). The block freed last is handed out first. Always
    /// pass the same upstream to one list.
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
    /// list.deallocate(a.start, 200)?;
    /// assert_eq!(list.allocate(&mut up, 256, 256)?.start, a.start); // freed last, out first
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
        if self.free_head == END {
            self.grow(upstream)?;
        }
        Ok(self.take_block(units))
    }

    /// [`allocate`](Self::allocate) for a request already checked by the caller (binning):
    /// `1 <= size <= block_size` and an alignment of at most 256.
    #[inline(always)]
    pub(super) fn allocate_fitting<U: Upstream + ?Sized>(
        &mut self,
        upstream: &mut U,
        size: u64,
    ) -> Result<Range, Error> {
        debug_assert!(size >= 1 && size <= self.config.block_size);
        if self.free_head == END {
            self.grow(upstream)?;
        }
        // size <= block_size <= 2^39: no overflow, and at most 2^31 units.
        Ok(self.take_block(units_of(size) as u32))
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
        if self.free_head == END {
            return Ok(None);
        }
        Ok(Some(self.take_block(units)))
    }

    /// The chunk slot of block index `index` (a multiplication, see [`index_divider`]).
    #[inline(always)]
    fn slot_of(&self, index: u32) -> u32 {
        ((u64::from(index) * self.slot_mul) >> self.slot_shift) as u32
    }

    /// Pops the top of the free stack for a request of `units`. The stack must not be empty.
    #[inline(always)]
    fn take_block(&mut self, units: u32) -> Range {
        let index = self.free_head;
        debug_assert!(index != END, "take_block on an empty free stack");
        debug_assert!(units >= 1 && u64::from(units) * DEFAULT_ALIGNMENT <= self.config.block_size);
        let entry = &mut self.blocks.as_mut_slice()[index as usize];
        debug_assert!(
            *entry & ALLOCATED == 0,
            "free stack links an allocated block"
        );
        self.free_head = *entry;
        *entry = ALLOCATED | (units - 1);
        let slot = self.slot_of(index);
        debug_assert_eq!(slot, index / self.config.blocks_per_chunk);
        let local = index - slot * self.config.blocks_per_chunk;
        let start =
            self.chunks.as_slice()[slot as usize].start + u64::from(local) * self.config.block_size;
        self.live_blocks += 1;
        self.live_units += u64::from(units);
        Range::new(start, u64::from(units) * DEFAULT_ALIGNMENT)
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
        self.deallocate_with::<true>(addr, size)
    }

    /// [`deallocate`](Self::deallocate) for a list without runs ([`without_runs`]
    /// (Self::without_runs)): straight to the table, without testing for run mode.
    #[inline(always)]
    pub(super) fn deallocate_without_runs(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        debug_assert!(!self.runs);
        self.deallocate_with::<false>(addr, size)
    }

    /// [`deallocate`](Self::deallocate), looking the chunk up with run mode or with the
    /// table only.
    #[inline(always)]
    fn deallocate_with<const RUNS: bool>(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        let found = if RUNS {
            self.find_chunk(addr)
        } else {
            self.find_chunk_hashed(addr)
        };
        let Some((first, chunk_start)) = found else {
            return Err(Error::NotAllocated { addr });
        };
        let offset = addr - chunk_start;
        debug_assert!(offset < self.chunk_bytes);
        let local = if offset & self.block_mask == 0 {
            offset >> self.block_shift
        } else {
            match self.divide_offset(offset) {
                Some(local) => local,
                None => return Err(Error::NotAllocated { addr }),
            }
        };
        debug_assert!(local < u64::from(self.config.blocks_per_chunk));
        let index = first as usize + local as usize;
        let entry = &mut self.blocks.as_mut_slice()[index];
        if *entry & ALLOCATED == 0 {
            return Err(Error::DoubleFree { addr });
        }
        let units = (*entry & !ALLOCATED) + 1;
        // Sizes within 255 of u64::MAX give 0 units: never a match.
        if units_of(size) != u64::from(units) {
            return Err(Error::SizeMismatch {
                addr,
                allocated: u64::from(units) * DEFAULT_ALIGNMENT,
                given: size,
            });
        }
        // Validated: push the block on the free stack.
        *entry = self.free_head;
        self.free_head = index as u32;
        self.live_blocks -= 1;
        self.live_units -= u64::from(units);
        Ok(())
    }

    /// The block at `offset` in a chunk when the block size is not a power of two, or `None`
    /// when `offset` is not the start of a block. (Out of line: power-of-two block sizes get
    /// here only for interior addresses.)
    #[inline(never)]
    fn divide_offset(&self, offset: u64) -> Option<u64> {
        if self.block_mask != u64::MAX {
            return None;
        }
        // offset < chunk_bytes <= 2^62: see offset_divider.
        let q = ((u128::from(offset) * u128::from(self.offset_mul)) >> self.offset_shift) as u64;
        debug_assert_eq!(q, offset / self.config.block_size);
        (q * self.config.block_size == offset).then_some(q)
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

    /// The bucket of `granule`: a multiplicative hash, its top bits.
    #[inline(always)]
    fn bucket_of(&self, granule: u64) -> usize {
        (granule.wrapping_mul(HASH_MUL) >> self.hash_shift) as usize
    }

    /// The index of the first block and the start of the chunk that contains `addr`.
    #[inline(always)]
    fn find_chunk(&self, addr: u64) -> Option<(u32, u64)> {
        if self.run_len != 0 {
            // Run mode: arithmetic only.
            let offset = addr.wrapping_sub(self.run_base);
            let c = offset >> self.run_shift;
            let within = offset - (c << self.run_shift);
            return (c < u64::from(self.run_len) && within < self.chunk_bytes)
                .then(|| (c as u32 * self.config.blocks_per_chunk, addr - within));
        }
        self.find_chunk_hashed(addr)
    }

    /// [`find_chunk`](Self::find_chunk) through the lookup table.
    #[inline(always)]
    fn find_chunk_hashed(&self, addr: u64) -> Option<(u32, u64)> {
        let buckets = self.buckets.as_slice();
        let n = buckets.len();
        if n == 0 {
            return None;
        }
        debug_assert!(n.is_power_of_two() && hash_shift_for(n) == self.hash_shift);
        let home = self.bucket_of(addr >> self.granule_shift);
        let bucket = &buckets[home & (n - 1)];
        if let Some(found) = bucket.find(addr, self.chunk_bytes) {
            return Some(found);
        }
        // A bucket with an empty entry holds every entry hashed to it.
        if !bucket.is_full() {
            return None;
        }
        self.find_chunk_beyond(addr, home)
    }

    /// [`find_chunk`](Self::find_chunk) in the buckets after a full home bucket.
    #[cold]
    #[inline(never)]
    fn find_chunk_beyond(&self, addr: u64, home: usize) -> Option<(u32, u64)> {
        let buckets = self.buckets.as_slice();
        let n = buckets.len();
        // There always is a bucket with an empty entry to end the probe (fewer entries than
        // half the entries of the table); the bound only guards against a broken invariant.
        for b in (home + 1..).take(n - 1) {
            let bucket = &buckets[b & (n - 1)];
            if let Some(found) = bucket.find(addr, self.chunk_bytes) {
                return Some(found);
            }
            if !bucket.is_full() {
                return None;
            }
        }
        debug_assert!(false, "fixed list lookup table is full");
        None
    }

    /// Takes one chunk from `upstream` and pushes its blocks on the free stack. Returns the
    /// chunk's range. Use it to preallocate (RMM preallocates one chunk at construction).
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
    #[cold]
    #[inline(never)]
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
            // Slots stay below NIL, block indices below END.
            if self.chunks.len() >= NIL as usize || self.blocks.len() + bpc > END as usize {
                return Err(Error::MetadataExhausted {
                    capacity: END as usize,
                });
            }
        }
        // The chunk adds one or two table entries (it is only known which after step 2).
        let worst = self.table_size_for(self.entries as usize + 2)?;
        // 2. The chunk.
        let range = upstream.allocate(self.chunk_bytes, DEFAULT_ALIGNMENT)?;
        debug_assert_eq!(range.len, self.chunk_bytes);
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
        let extends_run = new_slot && self.run_extended_by(c, range.start);
        // The chunk's blocks, first to last, on top of the free stack.
        let first = c as usize * bpc;
        let below = self.free_head;
        for (i, entry) in self.blocks.as_mut_slice()[first..first + bpc]
            .iter_mut()
            .enumerate()
        {
            *entry = if i + 1 < bpc {
                (first + i + 1) as u32
            } else {
                below
            };
        }
        self.free_head = first as u32;
        self.chunks.as_mut_slice()[c as usize] = ChunkMeta {
            start: range.start,
            free: 0,
            next: NIL,
        };
        self.live_chunks += 1;
        if extends_run {
            if c == 1 {
                self.run_shift = (range.start - self.run_base).trailing_zeros();
            }
            self.run_len += 1;
        } else {
            // Not O(chunks) per chunk: a run only ends here, or restarts when the first
            // chunk or the last vacant slot is taken.
            self.run_len = 0;
            if c == 0 || self.vacant_head == NIL && !new_slot {
                self.refresh_run();
            }
        }
        let granules = self.granules_of(range.start);
        // Needs at most what the worst case did, which was checked.
        let size = self.table_size_for(self.entries as usize + granules);
        debug_assert!(size.is_ok() && (worst.is_some() || size == Ok(None)));
        match size {
            Ok(Some(n)) => self.rebuild_table(n),
            _ => self.table_insert(c),
        }
        Ok(range)
    }

    /// Whether a new chunk in slot `c` (the last), starting at `start`, continues the run of
    /// slots `0..c`.
    fn run_extended_by(&self, c: u32, start: u64) -> bool {
        if !self.runs || c == 0 || self.run_len != c {
            return false;
        }
        if c == 1 {
            // The second chunk sets the stride.
            let stride = start.wrapping_sub(self.run_base);
            return start > self.run_base && stride.is_power_of_two() && stride >= self.chunk_bytes;
        }
        (1u64 << self.run_shift)
            .checked_mul(u64::from(c))
            .and_then(|offset| self.run_base.checked_add(offset))
            == Some(start)
    }

    /// Recomputes run mode from the chunk records: on when every slot is live and the starts
    /// step by a power of two of at least `chunk_bytes` (any single chunk is a run). O(chunks).
    fn refresh_run(&mut self) {
        self.run_len = 0;
        let chunks = self.chunks.as_slice();
        if !self.runs || self.vacant_head != NIL || chunks.is_empty() {
            return;
        }
        let base = chunks[0].start;
        let shift = match chunks.get(1) {
            None => self.chunk_bytes.next_power_of_two().trailing_zeros(),
            Some(second) => {
                let stride = second.start.wrapping_sub(base);
                if second.start <= base || !stride.is_power_of_two() || stride < self.chunk_bytes {
                    return;
                }
                stride.trailing_zeros()
            }
        };
        let in_run = |(c, chunk): (usize, &ChunkMeta)| {
            (1u64 << shift)
                .checked_mul(c as u64)
                .and_then(|offset| base.checked_add(offset))
                == Some(chunk.start)
        };
        if chunks.iter().enumerate().all(in_run) {
            self.run_base = base;
            self.run_shift = shift;
            self.run_len = chunks.len() as u32;
        }
    }

    /// The number of buckets to rebuild the table with so that it holds `entries` entries, or
    /// `None` when the current table does: a power of two, at least half the entries (and 4)
    /// when the store can grow (at most two entries per bucket on average), else as many as
    /// the store holds. At least one empty entry must stay, so that every probe ends.
    fn table_size_for(&self, entries: usize) -> Result<Option<usize>, Error> {
        let mut n = entries.div_ceil(2).next_power_of_two().max(4);
        if let Some(limit) = self.buckets.limit() {
            n = n.min(prev_power_of_two(limit));
        }
        if n <= entries / BUCKET_SLOTS
            || (n > self.buckets.len() && self.buckets.spare() < n - self.buckets.len())
        {
            return Err(Error::MetadataExhausted {
                capacity: self.buckets.limit().unwrap_or(usize::MAX),
            });
        }
        Ok((n > self.buckets.len()).then_some(n))
    }

    /// How many granules (table entries) a chunk starting at `start` touches: 1 or 2.
    fn granules_of(&self, start: u64) -> usize {
        let first = start >> self.granule_shift;
        let last = (start + (self.chunk_bytes - 1)) >> self.granule_shift;
        debug_assert!(last - first <= 1, "a chunk touches at most two granules");
        1 + usize::from(last != first)
    }

    /// Gives every wholly free chunk back to `upstream`; returns the bytes given back.
    ///
    /// The free blocks are counted per chunk (a walk down the free stack), the wholly free
    /// chunks go back in slot order, and their blocks leave the stack: O(free blocks + chunks).
    /// Allocation reuses the block freed last whatever its chunk (like RMM's free list), so
    /// under a steady mix of allocations and frees the live blocks spread over the chunks; a
    /// chunk is wholly free when all its blocks are, e.g. after a burst is freed.
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
        // 1. Count the free blocks of every chunk.
        for chunk in self.chunks.as_mut_slice() {
            chunk.free = 0;
        }
        let mut at = self.free_head;
        while at != END {
            let slot = self.slot_of(at) as usize;
            self.chunks.as_mut_slice()[slot].free += 1;
            at = self.blocks.as_slice()[at as usize];
        }
        // 2. Give the wholly free ones back.
        let mut released = 0;
        let mut result = Ok(());
        for c in 0..self.chunks.len() {
            let chunk = self.chunks.as_slice()[c];
            if chunk.start == VACANT || chunk.free != bpc {
                continue;
            }
            if let Err(e) = upstream.deallocate(Range::new(chunk.start, self.chunk_bytes)) {
                result = Err(e);
                break;
            }
            let slot = &mut self.chunks.as_mut_slice()[c];
            slot.start = VACANT;
            slot.next = self.vacant_head;
            self.vacant_head = c as u32;
            self.live_chunks -= 1;
            released += self.chunk_bytes;
        }
        // 3. Their blocks leave the free stack; the table forgets them.
        if released > 0 {
            // Vacant slots: no run until they are taken again.
            self.run_len = 0;
            let (mut prev, mut at) = (END, self.free_head);
            while at != END {
                let next = self.blocks.as_slice()[at as usize];
                if self.chunks.as_slice()[self.slot_of(at) as usize].start == VACANT {
                    if prev == END {
                        self.free_head = next;
                    } else {
                        self.blocks.as_mut_slice()[prev as usize] = next;
                    }
                } else {
                    prev = at;
                }
                at = next;
            }
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
        self.free_head = END;
        self.hash_shift = 63;
        self.entries = 0;
        self.run_len = 0;
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
            upstream_bytes: u64::from(self.live_chunks) * self.chunk_bytes,
            live_blocks: u64::from(self.live_blocks),
            free_blocks: blocks_held - u64::from(self.live_blocks),
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
    /// for _ in 0..8 {
    ///     list.grow(&mut up)?;
    /// }
    /// let per_block = list.metadata_bytes() as f64 / (8.0 * 128.0);
    /// assert!(per_block < 5.0, "{per_block}"); // 4 B per block + the chunk and table share
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
        let chunk_bytes = self.chunk_bytes;
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
        if blocks.len() != chunks.len() * bpc as usize || blocks.len() > END as usize {
            return Err("block entries do not match chunk slots");
        }
        let (mut live_chunks, mut live_blocks, mut live_units) = (0u32, 0u32, 0u64);
        for (c, chunk) in chunks.iter().enumerate() {
            if chunk.start == VACANT {
                continue;
            }
            live_chunks += 1;
            let found = Some((c as u32 * bpc, chunk.start));
            let last = chunk.start + self.chunk_bytes - 1;
            if self.find_chunk_hashed(chunk.start) != found || self.find_chunk_hashed(last) != found
            {
                return Err("lookup table does not find a chunk");
            }
            if self.find_chunk(chunk.start) != found || self.find_chunk(last) != found {
                return Err("run mode does not find a chunk");
            }
            for &e in &blocks[c * bpc as usize..(c + 1) * bpc as usize] {
                if e & ALLOCATED != 0 {
                    live_blocks += 1;
                    live_units += u64::from((e & !ALLOCATED) + 1);
                    if u64::from((e & !ALLOCATED) + 1) * DEFAULT_ALIGNMENT > self.config.block_size
                    {
                        return Err("a live block records a size above the block size");
                    }
                }
            }
        }
        if (live_chunks, live_blocks, live_units)
            != (self.live_chunks, self.live_blocks, self.live_units)
        {
            return Err("counters do not match the entries");
        }
        // The free stack: exactly the free blocks of the live chunks, each once. A walk of
        // that many steps that visits only free blocks of live chunks and then ends visits
        // each once (a repeat would be a cycle, which never ends).
        let free = u64::from(live_chunks) * u64::from(bpc) - u64::from(live_blocks);
        let mut at = self.free_head;
        for _ in 0..free {
            if at as usize >= blocks.len()
                || blocks[at as usize] & ALLOCATED != 0
                || chunks[self.slot_of(at) as usize].start == VACANT
            {
                return Err("free stack links a bad entry");
            }
            at = blocks[at as usize];
        }
        if at != END {
            return Err("free stack longer than the free blocks, or cyclic");
        }
        // The table: a power of two of buckets, fewer than two chunks per bucket, and only
        // live chunks in it, each under every granule it touches (checked above) and nowhere
        // else.
        let n = self.buckets.len();
        if live_chunks > 0 && (!n.is_power_of_two() || hash_shift_for(n) != self.hash_shift) {
            return Err("lookup table size is not the power of two it hashes to");
        }
        if live_chunks > 0 && n * BUCKET_SLOTS <= self.entries as usize {
            return Err("lookup table has no empty entry");
        }
        let mut entries = 0;
        for bucket in self.buckets.as_slice() {
            let used = bucket.firsts.iter().take_while(|&&f| f != NIL).count();
            if bucket.firsts[used..].iter().any(|&f| f != NIL)
                || bucket.starts[used..].iter().any(|&s| s != u64::MAX)
            {
                return Err("lookup bucket has a used entry after an empty one");
            }
            if bucket.starts[..used].windows(2).any(|w| w[0] >= w[1]) {
                return Err("lookup bucket not sorted by start");
            }
            for j in 0..used {
                let (f, start) = (bucket.firsts[j], bucket.starts[j]);
                let s = (f / bpc) as usize;
                if f % bpc != 0 || s >= chunks.len() || chunks[s].start != start {
                    return Err("lookup table holds a chunk that is not live");
                }
            }
            entries += used;
        }
        let expected: usize = self.chunks().map(|r| self.granules_of(r.start)).sum();
        if entries != expected || entries != self.entries as usize {
            return Err("lookup table holds stale entries");
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
        if self.run_len != 0 {
            let stride = 1u64 << self.run_shift;
            let in_run = chunks.iter().enumerate().all(|(c, chunk)| {
                stride
                    .checked_mul(c as u64)
                    .and_then(|offset| self.run_base.checked_add(offset))
                    == Some(chunk.start)
            });
            if !self.runs
                || vacant != 0
                || self.run_len as usize != chunks.len()
                || stride < self.chunk_bytes
                || !in_run
            {
                return Err("run mode on without a run");
            }
        }
        Ok(())
    }

    /// Enters live chunk `c` under the granules it touches. The table must have room.
    fn table_insert(&mut self, c: u32) {
        let start = self.chunks.as_slice()[c as usize].start;
        let first = start >> self.granule_shift;
        self.table_put(first, c, start);
        if self.granules_of(start) == 2 {
            self.table_put(first + 1, c, start);
        }
    }

    /// Enters chunk `c` (starting at `start`) under `granule`: in the first bucket from the
    /// granule's with an empty entry, in start order.
    fn table_put(&mut self, granule: u64, c: u32, start: u64) {
        let home = self.bucket_of(granule);
        let first_block = c * self.config.blocks_per_chunk;
        let buckets = self.buckets.as_mut_slice();
        let n = buckets.len();
        for b in (home..).take(n) {
            let bucket = &mut buckets[b & (n - 1)];
            if bucket.is_full() {
                continue;
            }
            // Empty entries start at u64::MAX, above every chunk: the place keeps the order.
            let at = bucket.starts.iter().take_while(|&&s| s < start).count();
            bucket.starts.copy_within(at..BUCKET_SLOTS - 1, at + 1);
            bucket.firsts.copy_within(at..BUCKET_SLOTS - 1, at + 1);
            bucket.starts[at] = start;
            bucket.firsts[at] = first_block;
            self.entries += 1;
            return;
        }
        debug_assert!(false, "fixed list lookup table is full");
    }

    /// Rebuilds the lookup table with `n` buckets, a power of two (room checked by the caller).
    fn rebuild_table(&mut self, n: usize) {
        debug_assert!(n.is_power_of_two());
        let resized = self.buckets.resize(n, EMPTY_BUCKET);
        debug_assert!(resized.is_ok(), "room was checked");
        self.hash_shift = hash_shift_for(n);
        self.entries = 0;
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
        // Allocation takes the one free block left (in the partial chunk), then reuses a
        // vacant slot.
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
    fn single_block_chunks_go_back_one_by_one() {
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

    #[test]
    fn dividers_match_division() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut divisors: alloc::vec::Vec<u32> = (1..=1000).collect();
        divisors.extend([1 << 20, (1 << 20) + 1, 1 << 30, MAX_BLOCKS_PER_CHUNK, END]);
        divisors.extend((0..200).map(|_| (next() % u64::from(END)) as u32 + 1));
        for d in divisors {
            let (m, s) = index_divider(d);
            let check = |n: u32| {
                assert_eq!(((u64::from(n) * m) >> s) as u32, n / d, "{n} / {d}");
            };
            for n in [0, 1, d - 1, d, d.saturating_add(1), END - 1, END] {
                check(n);
            }
            for _ in 0..200 {
                check((next() % (u64::from(END) + 1)) as u32);
            }
        }
        let mut sizes: alloc::vec::Vec<u64> = (1..=64).map(|u| u * 256).collect();
        sizes.extend([
            768,
            3 << 20,
            MAX_BLOCK_SIZE - 256,
            MAX_BLOCK_SIZE,
            1,
            3,
            1000,
        ]);
        sizes.extend((0..100).map(|_| next() % MAX_BLOCK_SIZE + 1));
        for d in sizes {
            let (m, s) = offset_divider(d);
            let check = |n: u64| {
                let q = ((u128::from(n) * u128::from(m)) >> s) as u64;
                assert_eq!(q, n / d, "{n} / {d}");
            };
            for n in [0, 1, d - 1, d, d + 1, (1 << 62) - 1, (1 << 62) - d] {
                check(n);
            }
            for k in [1, 2, 127, 128, 1 << 20, (1 << 62) / d - 1] {
                check(k * d);
                check(k * d - 1);
                check(k * d + 1);
            }
            for _ in 0..200 {
                check(next() >> 2);
            }
        }
    }

    #[test]
    fn the_block_freed_last_is_allocated_first() {
        let mut up = SimUpstream::new(1 << 30);
        let mut l = FixedBlocks::<Heap>::new(FixedConfig::new(256, 4).unwrap());
        let blocks: alloc::vec::Vec<Range> = (0..12)
            .map(|_| l.allocate(&mut up, 256, 256).unwrap())
            .collect();
        for i in [5, 0, 9, 2] {
            l.deallocate(blocks[i].start, 256).unwrap();
        }
        l.audit().unwrap();
        for i in [2, 9, 0, 5] {
            assert_eq!(
                l.allocate(&mut up, 100, 256).unwrap().start,
                blocks[i].start
            );
        }
        assert_eq!(l.try_allocate(256, 256), Ok(None));
        l.audit().unwrap();
    }

    #[test]
    fn trim_takes_the_chunks_blocks_off_the_free_stack() {
        let mut up = SimUpstream::new(1 << 30);
        let mut l = FixedBlocks::<Heap>::new(FixedConfig::new(512, 3).unwrap());
        let blocks: alloc::vec::Vec<Range> = (0..15)
            .map(|_| l.allocate(&mut up, 512, 256).unwrap())
            .collect();
        // Chunks {0,1,2} .. {12,13,14}. Empty chunks 1 and 3 with their frees interleaved
        // with frees in chunks 0 and 4, so the trimmed blocks sit all over the stack.
        for i in [3, 0, 9, 4, 14, 10, 5, 11] {
            l.deallocate(blocks[i].start, 512).unwrap();
        }
        assert_eq!(l.trim(&mut up).unwrap(), 2 * 3 * 512);
        l.audit().unwrap();
        assert_eq!(l.stats().free_blocks, 2);
        for i in [3, 4, 5, 9, 10, 11] {
            assert!(!l.contains(blocks[i].start));
        }
        // The remaining free blocks, last freed first; then a vacant slot is reused.
        assert_eq!(l.allocate(&mut up, 512, 256).unwrap(), blocks[14]);
        assert_eq!(l.allocate(&mut up, 512, 256).unwrap(), blocks[0]);
        l.allocate(&mut up, 512, 256).unwrap();
        assert_eq!(l.stats().chunks, 4);
        assert_eq!(l.chunks.len(), 5);
        l.audit().unwrap();
    }

    #[test]
    fn inline_tables_of_any_capacity_hold_every_chunk() {
        let mut up = SimUpstream::new(1 << 30);
        // 12 chunk slots: an 8-bucket table (the largest power of two that fits) for 12
        // chunks, with a 768-byte block size (the divide path).
        let mut l = FixedBlocks::<Inline<48, 12>>::new(FixedConfig::new(768, 4).unwrap());
        let mut live = alloc::vec::Vec::new();
        while let Ok(r) = l.allocate(&mut up, 700, 256) {
            live.push(r);
        }
        assert_eq!(live.len(), 48);
        assert_eq!(l.buckets.len(), 8);
        l.audit().unwrap();
        for r in &live {
            assert!(l.contains(r.start) && l.contains(r.end() - 1));
            assert_eq!(
                l.deallocate(r.start + 256, 700),
                Err(Error::NotAllocated {
                    addr: r.start + 256
                })
            );
        }
        for r in live.iter().rev() {
            l.deallocate(r.start, 700).unwrap();
        }
        l.audit().unwrap();
        assert_eq!(l.trim(&mut up).unwrap(), 12 * 4 * 768);
        assert_eq!(up.in_use(), 0);
        l.audit().unwrap();
    }

    #[test]
    fn run_mode_follows_the_chunks() {
        // Contiguous chunks: a run of stride chunk_bytes.
        let mut up = SimUpstream::new(1 << 30);
        let mut l = FixedBlocks::<Heap>::new(FixedConfig::new(1024, 4).unwrap());
        let blocks: alloc::vec::Vec<Range> = (0..12)
            .map(|_| l.allocate(&mut up, 1024, 256).unwrap())
            .collect();
        assert_eq!((l.run_len, l.run_shift), (3, 12));
        l.audit().unwrap();
        let end = blocks[11].end();
        for addr in [
            blocks[0].start - 256,
            end,
            end + 4096,
            blocks[5].start + 256,
        ] {
            assert!(matches!(
                l.deallocate(addr, 1024),
                Err(Error::NotAllocated { .. })
            ));
        }
        for r in &blocks {
            assert!(l.contains(r.start));
        }
        // Trimming a chunk leaves a vacant slot: no run; taking it again restores the run.
        for r in &blocks[4..8] {
            l.deallocate(r.start, 1024).unwrap();
        }
        assert_eq!(l.trim(&mut up).unwrap(), 4096);
        assert_eq!(l.run_len, 0);
        l.audit().unwrap();
        assert!(!l.contains(blocks[4].start));
        for r in &blocks[4..8] {
            assert_eq!(l.allocate(&mut up, 1024, 256).unwrap().start, r.start);
        }
        assert_eq!(l.run_len, 3);
        l.audit().unwrap();
        // A chunk off the stride ends the run; the table takes over.
        let spacer = up.allocate(256, 256).unwrap();
        l.allocate(&mut up, 1024, 256).unwrap();
        assert_eq!(l.run_len, 0);
        l.audit().unwrap();
        for r in &blocks {
            l.deallocate(r.start, 1024).unwrap();
        }
        l.audit().unwrap();
        up.deallocate(spacer).unwrap();

        // A power-of-two stride above the chunk size (chunks spaced out), and gaps rejected.
        struct Spaced(SimUpstream);
        impl Upstream for Spaced {
            fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
                let r = self.0.allocate(size, align)?;
                self.0.allocate(size, align)?; // the gap after the chunk
                Ok(r)
            }
            fn deallocate(&mut self, range: Range) -> Result<(), Error> {
                self.0.deallocate(range)
            }
        }
        let mut up = Spaced(SimUpstream::new(1 << 30));
        let mut l = FixedBlocks::<Heap>::new(FixedConfig::new(256, 2).unwrap());
        let blocks: alloc::vec::Vec<Range> = (0..6)
            .map(|_| l.allocate(&mut up, 256, 256).unwrap())
            .collect();
        assert_eq!((l.run_len, l.run_shift), (3, 10));
        l.audit().unwrap();
        for r in &blocks {
            let gap = r.start + 1024;
            if !blocks.iter().any(|b| b.start == gap) {
                assert_eq!(
                    l.deallocate(gap, 256),
                    Err(Error::NotAllocated { addr: gap })
                );
            }
            l.deallocate(r.start, 256).unwrap();
        }
        l.audit().unwrap();

        // Binning's bins never use runs.
        let list = FixedBlocks::<Heap>::new(FixedConfig::new(256, 2).unwrap()).without_runs();
        let mut up = SimUpstream::new(1 << 30);
        let mut list = list;
        list.allocate(&mut up, 256, 256).unwrap();
        assert_eq!(list.run_len, 0);
        list.audit().unwrap();
    }
}
