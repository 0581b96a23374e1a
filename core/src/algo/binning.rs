//! Binning: requests sorted by size into fixed-size bins; larger ones go to the upstream.
//!
//! Like RMM's `binning_memory_resource`: a set of bin sizes (multiples of 256), each bin a
//! fixed-size block list ([`FixedBlocks`]); a request goes to the smallest bin that holds it,
//! and a request larger than the largest bin goes straight to the upstream. The bins take
//! their chunks from the same upstream.
//!
//! The upstream is anything that implements [`Upstream`]: a [`SimUpstream`](crate::SimUpstream),
//! a driver upstream, or any [`MemoryResource`](crate::MemoryResource) through
//! [`AsUpstream`](crate::adaptors::AsUpstream) (e.g. a pool, as in RMM's benchmarks where the
//! bins sit over a pool).
//!
//! ```
//! use strata_core::algo::{Binning, Heap};
//! use strata_core::SimUpstream;
//!
//! // Bins of 256 B, 512 B, ..., 64 KiB (2^8 ..= 2^16).
//! let mut b: Binning<_, Heap> = Binning::with_exponents(SimUpstream::new(1 << 30), 8, 16)?;
//! let small = b.allocate(300, 256)?; // from the 512-byte bin
//! let large = b.allocate(1 << 20, 256)?; // above 64 KiB: from the upstream
//! assert_eq!(b.bin_for(300), Some(1));
//! assert_eq!(b.stats().large_allocations, 1);
//! b.deallocate(small.start, 300)?;
//! b.deallocate(large.start, 1 << 20)?;
//! # Ok::<(), strata_core::Error>(())
//! ```

use core::fmt;

use super::{FixedBlocks, FixedConfig, MetaStorage, MetaVec};
use crate::{DEFAULT_ALIGNMENT, Error, Range, Upstream, check_alignment};

/// Size classes of the bin lookup: the bit length of `size - 1` (class `k > 0` holds the sizes
/// `2^(k-1) + 1 ..= 2^k`, class 0 the size 1), for every size of a `u64`.
const CLASSES: usize = 65;

/// Blocks per chunk of the bins that [`Binning::add_bin`] makes (RMM's
/// `blocks_to_preallocate`).
pub const DEFAULT_BLOCKS_PER_BIN_CHUNK: u32 = 128;

/// The smallest and largest bin exponents of [`Binning::with_default_bins`]: bins of
/// 2^8 = 256 B up to 2^20 = 1 MiB.
pub const DEFAULT_BIN_EXPONENTS: (u32, u32) = (8, 20);

/// Counters of a [`Binning`].
///
/// Every byte held from the upstream is in a bin's chunk (`chunk_bytes`, itself live or free
/// blocks) or is a large allocation: `upstream_bytes() == chunk_bytes + large_bytes`.
///
/// ```
/// use strata_core::algo::{Binning, Heap};
/// let mut b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 9)?;
/// b.allocate(100, 256)?;
/// b.allocate(4096, 256)?;
/// let s = b.stats();
/// assert_eq!((s.live_blocks, s.large_allocations, s.large_bytes), (1, 1, 4096));
/// assert_eq!(s.chunk_bytes, 128 * 256);
/// assert_eq!(s.live_block_bytes + s.free_block_bytes, s.chunk_bytes);
/// assert_eq!(s.upstream_bytes(), 128 * 256 + 4096);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BinningStats {
    /// Number of bins.
    pub bins: usize,
    /// Bytes of the bins' chunks.
    pub chunk_bytes: u64,
    /// Blocks handed out, over all bins.
    pub live_blocks: u64,
    /// Bytes of the blocks handed out (whole blocks).
    pub live_block_bytes: u64,
    /// Bytes of the free blocks in the bins' chunks.
    pub free_block_bytes: u64,
    /// Live allocations served by the upstream directly.
    pub large_allocations: u64,
    /// Their bytes (each rounded up to 256).
    pub large_bytes: u64,
}

impl BinningStats {
    /// Bytes held from the upstream: the bins' chunks and the large allocations.
    ///
    /// ```
    /// let s = strata_core::algo::BinningStats { chunk_bytes: 10, large_bytes: 5, ..Default::default() };
    /// assert_eq!(s.upstream_bytes(), 15);
    /// ```
    pub const fn upstream_bytes(&self) -> u64 {
        self.chunk_bytes + self.large_bytes
    }
}

/// Size classes to fixed-size bins; larger requests to the upstream.
///
/// - `U`: the upstream of the bins' chunks and of the large requests.
/// - `M`: where the metadata lives ([`Heap`](super::Heap), or [`Inline`](super::Inline) for
///   no heap; with `Inline<BLOCKS, CHUNKS>` *each* bin gets that capacity, and `CHUNKS` also
///   bounds the live large allocations).
/// - `BINS`: the most bins (fewer than 255; default 32).
///
/// # Requests
///
/// A request of `size` bytes with an alignment of at most 256 goes to the smallest bin whose
/// block size is at least `size` ([`bin_for`](Self::bin_for): O(1) with power-of-two bins —
/// a table indexed by the request's power of two gives the first candidate, and only bins of
/// the same power of two are stepped over). Larger requests, and requests with a larger
/// alignment, go to the upstream, rounded up to 256 bytes; they are recorded (sorted by
/// address), so their frees are validated too.
///
/// # Frees
///
/// A free picks its bin from its size with the same lookup, and that bin validates the address
/// and the size in O(1). When the bin does not know the address, the slow path looks at the
/// large allocations (binary search) and then asks every bin whether the address is in one of
/// its chunks: so a block allocated before a smaller bin was added is still freed correctly,
/// and a wrong size is reported as [`Error::SizeMismatch`], not as a foreign address.
///
/// Dropping a `Binning` gives every chunk and large allocation back to the upstream.
///
/// ```
/// use strata_core::algo::{Binning, Heap};
/// use strata_core::{SimUpstream, Error};
/// let mut b: Binning<_, Heap> = Binning::new(SimUpstream::new(1 << 30));
/// b.add_bin(1000)?; // rounded up to 1024
/// b.add_bin(4096)?;
/// assert_eq!(b.bin_sizes().collect::<Vec<_>>(), [1024, 4096]);
/// let a = b.allocate(2000, 256)?;
/// assert_eq!(b.deallocate(a.start, 1000), Err(Error::SizeMismatch { addr: a.start, allocated: 2048, given: 1000 }));
/// b.deallocate(a.start, 2000)?;
/// # Ok::<(), Error>(())
/// ```
pub struct Binning<U: Upstream, M: MetaStorage, const BINS: usize = 32> {
    upstream: U,
    /// The bins, by strictly increasing block size.
    bins: heapless::Vec<FixedBlocks<M>, BINS>,
    /// `sizes[i]` is the block size of `bins[i]`.
    sizes: heapless::Vec<u64, BINS>,
    /// `first_bin[k]`: the first bin whose block holds at least `2^(k-1) + 1` bytes (1 byte
    /// for `k == 0`), i.e. the first bin that can serve a request of class `k` ([`class_of`]);
    /// `bins.len()` when there is none.
    first_bin: [u8; CLASSES],
    /// The largest bin's block size, 0 when there is no bin.
    max_binned: u64,
    /// Live large allocations, sorted by start, disjoint.
    large: M::Ranges,
    large_bytes: u64,
}

impl<U: Upstream + fmt::Debug, M: MetaStorage, const BINS: usize> fmt::Debug
    for Binning<U, M, BINS>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binning")
            .field("upstream", &self.upstream)
            .field("bin_sizes", &self.sizes.as_slice())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The size class of a request of `size` (>= 1) bytes: the bit length of `size - 1`, i.e.
/// `ceil(log2(size))`. One `leading_zeros`.
#[inline(always)]
fn class_of(size: u64) -> usize {
    (u64::BITS - (size - 1).leading_zeros()) as usize
}

impl<U: Upstream, M: MetaStorage, const BINS: usize> Binning<U, M, BINS> {
    /// A binning allocator with no bin yet (everything goes to the upstream until
    /// [`add_bin`](Self::add_bin)). A `const fn`.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let b: Binning<_, Heap> = Binning::new(strata_core::SimUpstream::new(1 << 20));
    /// assert_eq!(b.bin_sizes().count(), 0);
    /// ```
    pub const fn new(upstream: U) -> Self {
        const { assert!(BINS < u8::MAX as usize, "Binning: BINS must be below 255") };
        Self {
            upstream,
            bins: heapless::Vec::new(),
            sizes: heapless::Vec::new(),
            first_bin: [0; CLASSES],
            max_binned: 0,
            large: M::Ranges::EMPTY,
            large_bytes: 0,
        }
    }

    /// Bins of `2^min_exp, 2^(min_exp+1), ..., 2^max_exp` bytes (sizes below 256 round up to
    /// 256, so they share one bin), like RMM's `binning_memory_resource(upstream, min_exp,
    /// max_exp)`. No bin when `min_exp > max_exp`.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] when `2^max_exp` exceeds [`MAX_BLOCK_SIZE`](super::MAX_BLOCK_SIZE);
    /// [`Error::MetadataExhausted`] when there are more than `BINS` bins.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 20), 6, 10)?;
    /// assert_eq!(b.bin_sizes().collect::<Vec<_>>(), [256, 512, 1024]);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_exponents(upstream: U, min_exp: u32, max_exp: u32) -> Result<Self, Error> {
        let mut b = Self::new(upstream);
        for exp in min_exp..=max_exp {
            b.add_bin(1u64.checked_shl(exp).unwrap_or(u64::MAX))?;
        }
        Ok(b)
    }

    /// Power-of-two bins from [`DEFAULT_BIN_EXPONENTS`]: 256 B up to 1 MiB (13 bins).
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when `BINS < 13`.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let b: Binning<_, Heap> = Binning::with_default_bins(strata_core::SimUpstream::new(1 << 20))?;
    /// assert_eq!(b.bin_sizes().last(), Some(1 << 20));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn with_default_bins(upstream: U) -> Result<Self, Error> {
        let (min, max) = DEFAULT_BIN_EXPONENTS;
        Self::with_exponents(upstream, min, max)
    }

    /// Adds a bin of `size` bytes (rounded up to 256) with
    /// [`DEFAULT_BLOCKS_PER_BIN_CHUNK`] blocks per chunk. Adding a size that already has a bin
    /// changes nothing.
    ///
    /// A bin may be added while blocks are live: blocks of a larger bin whose size now maps to
    /// the new bin are still freed correctly (by the slow path of
    /// [`deallocate`](Self::deallocate)).
    ///
    /// # Errors
    ///
    /// As [`FixedConfig::new`] for a bad size; [`Error::MetadataExhausted`] when `BINS` bins
    /// exist. Nothing changes on error.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// use strata_core::Error;
    /// let mut b: Binning<_, Heap, 1> = Binning::new(strata_core::SimUpstream::new(1 << 20));
    /// b.add_bin(256)?;
    /// b.add_bin(1)?; // rounds to 256: already there
    /// assert_eq!(b.add_bin(512), Err(Error::MetadataExhausted { capacity: 1 }));
    /// assert_eq!(b.add_bin(0), Err(Error::ZeroSize));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn add_bin(&mut self, size: u64) -> Result<(), Error> {
        self.add_bin_with(FixedConfig::new(size, DEFAULT_BLOCKS_PER_BIN_CHUNK)?)
    }

    /// Adds a bin with its own block size and blocks per chunk. Adding a block size that
    /// already has a bin changes nothing (the existing bin keeps its configuration).
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when `BINS` bins exist; nothing changes then.
    ///
    /// ```
    /// use strata_core::algo::{Binning, FixedConfig, Heap};
    /// let mut b: Binning<_, Heap> = Binning::new(strata_core::SimUpstream::new(1 << 30));
    /// b.add_bin_with(FixedConfig::new(4 << 20, 4)?)?; // 4 MiB blocks, 16 MiB chunks
    /// b.allocate(3 << 20, 256)?;
    /// assert_eq!(b.stats().chunk_bytes, 16 << 20);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn add_bin_with(&mut self, config: FixedConfig) -> Result<(), Error> {
        let size = config.block_size();
        let at = self.sizes.partition_point(|&s| s < size);
        if self.sizes.get(at) == Some(&size) {
            return Ok(());
        }
        if self.bins.is_full() {
            return Err(Error::MetadataExhausted { capacity: BINS });
        }
        // Room checked: neither insert can fail.
        // The bins share the upstream, so their chunks rarely form runs: all use the table.
        let bin_added = self
            .bins
            .insert(at, FixedBlocks::new(config).without_runs())
            .is_ok();
        let size_added = self.sizes.insert(at, size).is_ok();
        debug_assert!(bin_added && size_added);
        self.rebuild_classes();
        Ok(())
    }

    fn rebuild_classes(&mut self) {
        for (k, first) in self.first_bin.iter_mut().enumerate() {
            let lowest = if k == 0 { 1 } else { (1u64 << (k - 1)) + 1 };
            *first = self.sizes.partition_point(|&s| s < lowest) as u8;
        }
        self.max_binned = self.sizes.last().copied().unwrap_or(0);
    }

    /// The bin sizes, ascending.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 20), 9, 10)?;
    /// assert_eq!(b.bin_sizes().collect::<Vec<_>>(), [512, 1024]);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn bin_sizes(&self) -> impl Iterator<Item = u64> + '_ {
        self.sizes.iter().copied()
    }

    /// The bins (ascending block size), for their [`stats`](FixedBlocks::stats) and
    /// [`audit`](FixedBlocks::audit).
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let mut b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 9)?;
    /// b.allocate(400, 256)?;
    /// assert_eq!(b.bins()[1].stats().live_blocks, 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn bins(&self) -> &[FixedBlocks<M>] {
        &self.bins
    }

    /// The index of the bin that serves a request of `size` bytes (alignment at most 256), or
    /// `None` when the upstream does (`size` is 0 or above the largest bin).
    ///
    /// O(1) for power-of-two bins; in general O(1 + bins sharing the request's power of two).
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 20), 8, 12)?;
    /// assert_eq!(b.bin_for(1), Some(0));
    /// assert_eq!(b.bin_for(257), Some(1));
    /// assert_eq!(b.bin_for(4096), Some(4));
    /// assert_eq!(b.bin_for(4097), None);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline(always)]
    pub fn bin_for(&self, size: u64) -> Option<usize> {
        // One test for both ends: 0 wraps around to u64::MAX.
        if size.wrapping_sub(1) >= self.max_binned {
            return None;
        }
        let mut i = usize::from(self.first_bin[class_of(size)]);
        // size <= the largest bin's size, so the walk stops inside the bins; with
        // power-of-two bins it never steps. (The bin's own block size, read from the bin the
        // caller uses next, so one bounds check serves both.)
        while self.bins[i].config().block_size() < size {
            i += 1;
        }
        Some(i)
    }

    /// Allocates `size` bytes aligned to `align`: from a bin when one holds `size` and
    /// `align <= 256`, else from the upstream. The range returned has the length `size`
    /// rounded up to 256.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroSize`], [`Error::InvalidAlignment`] (not a power of two),
    /// [`Error::SizeOverflow`] for bad requests; [`Error::MetadataExhausted`] when the bin (or
    /// the record of large allocations) has no room; the upstream's error. Nothing changes on
    /// error.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let mut b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 12)?;
    /// let r = b.allocate(1000, 4096)?; // alignment above 256: from the upstream
    /// assert_eq!((r.start % 4096, r.len), (0, 1024));
    /// assert_eq!(b.stats().large_allocations, 1);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    #[inline]
    pub fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        // A power of two up to 256 (any other alignment is an error of allocate_large).
        let small_align = align.wrapping_sub(1) < DEFAULT_ALIGNMENT && align & (align - 1) == 0;
        if small_align && let Some(i) = self.bin_for(size) {
            // bin_for checked 1 <= size <= the bin's block size.
            return self.bins[i].allocate_fitting(&mut self.upstream, size);
        }
        self.allocate_large(size, align)
    }

    #[cold]
    #[inline(never)]
    fn allocate_large(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        check_alignment(align)?;
        let rounded = crate::align_up(size, DEFAULT_ALIGNMENT)
            .ok_or(Error::SizeOverflow { requested: size })?;
        if self.large.spare() == 0 {
            return Err(Error::MetadataExhausted {
                capacity: self.large.limit().unwrap_or(usize::MAX),
            });
        }
        let range = self
            .upstream
            .allocate(rounded, align.max(DEFAULT_ALIGNMENT))?;
        debug_assert_eq!(range.len, rounded);
        let at = self
            .large
            .as_slice()
            .partition_point(|r| r.start < range.start);
        let inserted = self.large.insert(at, range);
        debug_assert!(inserted.is_ok(), "room was checked");
        self.large_bytes += range.len;
        Ok(range)
    }

    /// Frees the allocation at `addr`, made for `size` bytes (the size asked for, or the
    /// returned range's length: they round to the same 256 bytes).
    ///
    /// # Errors
    ///
    /// [`Error::NotAllocated`] for an address no bin and no large allocation knows (or not the
    /// start of a block); [`Error::DoubleFree`] for a free block; [`Error::SizeMismatch`] for
    /// a wrong size; the upstream's error when it refuses a large allocation back. Nothing
    /// changes on error.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// use strata_core::Error;
    /// let mut b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 12)?;
    /// let r = b.allocate(8192, 256)?;
    /// assert_eq!(b.deallocate(r.start, 256), Err(Error::SizeMismatch { addr: r.start, allocated: 8192, given: 256 }));
    /// b.deallocate(r.start, 8192)?;
    /// assert_eq!(b.deallocate(r.start, 8192), Err(Error::NotAllocated { addr: r.start }));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn deallocate(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        if let Some(i) = self.bin_for(size) {
            match self.bins[i].deallocate_without_runs(addr, size) {
                Err(Error::NotAllocated { .. }) => {}
                done => return done,
            }
        }
        self.deallocate_slow(addr, size)
    }

    /// A free that the size's bin does not know: a large allocation, a block of another bin,
    /// or a bad call.
    #[cold]
    fn deallocate_slow(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        if let Ok(at) = self
            .large
            .as_slice()
            .binary_search_by_key(&addr, |r| r.start)
        {
            let range = self.large.as_slice()[at];
            if size.div_ceil(DEFAULT_ALIGNMENT) != range.len / DEFAULT_ALIGNMENT {
                return Err(Error::SizeMismatch {
                    addr,
                    allocated: range.len,
                    given: size,
                });
            }
            self.upstream.deallocate(range)?;
            self.large.remove(at);
            self.large_bytes -= range.len;
            return Ok(());
        }
        // A bin's block under another size. A bin validates the size against the one it
        // recorded, so a block is freed only with a size that rounds to its own.
        match self.bins.iter_mut().find(|b| b.contains(addr)) {
            Some(bin) => bin.deallocate(addr, size),
            None => Err(Error::NotAllocated { addr }),
        }
    }

    /// Gives every wholly free chunk of every bin back to the upstream; returns the bytes.
    ///
    /// # Errors
    ///
    /// The upstream's error when it refuses a chunk (that chunk stays).
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let mut b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 8)?;
    /// let r = b.allocate(256, 256)?;
    /// b.deallocate(r.start, 256)?;
    /// assert_eq!(b.trim()?, 128 * 256);
    /// assert_eq!(b.upstream().in_use(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn trim(&mut self) -> Result<u64, Error> {
        let mut released = 0;
        for bin in self.bins.iter_mut() {
            released += bin.trim(&mut self.upstream)?;
        }
        Ok(released)
    }

    /// Gives every chunk and every large allocation back to the upstream, live or not; the
    /// bins stay (empty). Blocks still live dangle afterwards. [`Drop`] does this too.
    ///
    /// # Errors
    ///
    /// The first error of the upstream; everything is forgotten all the same.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let mut b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 8)?;
    /// b.allocate(256, 256)?;
    /// b.allocate(1 << 20, 256)?;
    /// b.release_all()?;
    /// assert_eq!(b.upstream().in_use(), 0);
    /// assert_eq!(b.stats().upstream_bytes(), 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn release_all(&mut self) -> Result<(), Error> {
        let mut result = Ok(());
        for bin in self.bins.iter_mut() {
            result = result.and(bin.release_all(&mut self.upstream));
        }
        for &range in self.large.as_slice() {
            if let Err(e) = self.upstream.deallocate(range) {
                result = result.and(Err(e));
            }
        }
        let _ = self.large.resize(0, Range::default());
        self.large_bytes = 0;
        result
    }

    /// The counters.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let b: Binning<_, Heap> = Binning::with_default_bins(strata_core::SimUpstream::new(1 << 20))?;
    /// assert_eq!(b.stats().bins, 13);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn stats(&self) -> BinningStats {
        let mut s = BinningStats {
            bins: self.bins.len(),
            large_allocations: self.large.len() as u64,
            large_bytes: self.large_bytes,
            ..BinningStats::default()
        };
        for bin in &self.bins {
            let b = bin.stats();
            s.chunk_bytes += b.upstream_bytes;
            s.live_blocks += b.live_blocks;
            s.live_block_bytes += b.live_bytes();
            s.free_block_bytes += b.free_bytes();
        }
        s
    }

    /// The live large allocations (served by the upstream), sorted by address.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let mut b: Binning<_, Heap> = Binning::new(strata_core::SimUpstream::new(1 << 20));
    /// let r = b.allocate(1000, 256)?;
    /// assert_eq!(b.large_allocations(), &[r]);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn large_allocations(&self) -> &[Range] {
        self.large.as_slice()
    }

    /// Bytes of metadata in use: the bins' ([`FixedBlocks::metadata_bytes`]), the record of
    /// large allocations, and the struct itself without the upstream it holds.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let b: Binning<_, Heap> = Binning::with_default_bins(strata_core::SimUpstream::new(1 << 20))?;
    /// assert!(b.metadata_bytes() > 0);
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn metadata_bytes(&self) -> usize {
        core::mem::size_of::<Self>() - core::mem::size_of::<U>()
            + self
                .bins
                .iter()
                .map(|b| b.metadata_bytes() - core::mem::size_of::<FixedBlocks<M>>())
                .sum::<usize>()
            + self.large.len() * core::mem::size_of::<Range>()
    }

    /// The upstream.
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let b: Binning<_, Heap> = Binning::new(strata_core::SimUpstream::new(1 << 20));
    /// assert_eq!(b.upstream().capacity(), 1 << 20);
    /// ```
    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// Checks every invariant (each bin's, the bin lookup, the large allocations); for tests
    /// and debugging. O(blocks + bins × classes).
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant (a bug in strata).
    ///
    /// ```
    /// use strata_core::algo::{Binning, Heap};
    /// let mut b: Binning<_, Heap> = Binning::with_exponents(strata_core::SimUpstream::new(1 << 30), 8, 12)?;
    /// b.allocate(1000, 256)?;
    /// assert_eq!(b.audit(), Ok(()));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn audit(&self) -> Result<(), &'static str> {
        for bin in &self.bins {
            bin.audit()?;
        }
        if self.bins.len() != self.sizes.len()
            || self
                .bins
                .iter()
                .zip(self.sizes.iter())
                .any(|(b, &s)| b.config().block_size() != s)
        {
            return Err("bin sizes do not match the bins");
        }
        if self.sizes.windows(2).any(|w| w[0] >= w[1]) {
            return Err("bin sizes are not strictly increasing");
        }
        // The lookup gives the smallest bin that holds each size at every bin boundary.
        for (i, &s) in self.sizes.iter().enumerate() {
            let below = if i == 0 { 1 } else { self.sizes[i - 1] + 1 };
            if self.bin_for(below) != Some(i) || self.bin_for(s) != Some(i) {
                return Err("bin lookup picks the wrong bin");
            }
        }
        if self.bin_for(self.max_binned + 1).is_some() {
            return Err("bin lookup serves a size above the largest bin");
        }
        let large = self.large.as_slice();
        if large.windows(2).any(|w| w[0].end() > w[1].start) {
            return Err("large allocations unsorted or overlapping");
        }
        if large.iter().map(|r| r.len).sum::<u64>() != self.large_bytes {
            return Err("large_bytes does not match the large allocations");
        }
        Ok(())
    }
}

impl<U: Upstream, M: MetaStorage, const BINS: usize> Drop for Binning<U, M, BINS> {
    /// Gives every chunk and large allocation back to the upstream, ignoring its errors.
    fn drop(&mut self) {
        let _ = self.release_all();
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::SimUpstream;
    use crate::algo::{Heap, Inline};
    use alloc::vec::Vec;

    type B = Binning<SimUpstream, Heap>;

    fn snapshot(b: &B) -> (BinningStats, Vec<Range>, u64) {
        (b.stats(), b.large.clone(), b.upstream.in_use())
    }

    #[test]
    fn class_of_is_ceil_log2() {
        assert_eq!([1, 2, 3, 4, 5, 8, 9].map(class_of), [0, 1, 2, 2, 3, 3, 4]);
        assert_eq!(class_of(1 << 31), 31);
        assert_eq!(class_of((1 << 31) + 1), 32);
        assert_eq!(class_of(u64::MAX), 64);
    }

    #[test]
    fn lookup_with_uneven_bins() {
        let mut b = B::new(SimUpstream::new(1 << 30));
        for s in [768, 1024, 1280, 3000, 65536] {
            b.add_bin(s).unwrap();
        }
        assert_eq!(
            b.bin_sizes().collect::<Vec<_>>(),
            [768, 1024, 1280, 3072, 65536]
        );
        let expect = [
            (1, Some(0)),
            (768, Some(0)),
            (769, Some(1)),
            (1024, Some(1)),
            (1025, Some(2)),
            (1281, Some(3)),
            (3072, Some(3)),
            (3073, Some(4)),
            (65536, Some(4)),
            (65537, None),
            (0, None),
        ];
        for (size, bin) in expect {
            assert_eq!(b.bin_for(size), bin, "size {size}");
        }
        b.audit().unwrap();
    }

    #[test]
    fn bad_calls_change_nothing() {
        let mut b = B::with_exponents(SimUpstream::new(1 << 20), 8, 10).unwrap();
        let a = b.allocate(500, 256).unwrap();
        let big = b.allocate(5000, 256).unwrap();
        let before = snapshot(&b);
        assert_eq!(b.allocate(0, 256), Err(Error::ZeroSize));
        assert_eq!(
            b.allocate(100, 100),
            Err(Error::InvalidAlignment { align: 100 })
        );
        assert_eq!(
            b.allocate(u64::MAX, 256),
            Err(Error::SizeOverflow {
                requested: u64::MAX
            })
        );
        assert!(matches!(
            b.allocate(1 << 30, 256),
            Err(Error::OutOfMemory { .. })
        ));
        for addr in [0, a.start + 256, big.start + 256, u64::MAX] {
            assert_eq!(b.deallocate(addr, 500), Err(Error::NotAllocated { addr }));
        }
        for size in [0, 256, 1024, 5000] {
            assert_eq!(
                b.deallocate(a.start, size),
                Err(Error::SizeMismatch {
                    addr: a.start,
                    allocated: 512,
                    given: size
                })
            );
        }
        for size in [0, 512, 4096, 8192] {
            assert_eq!(
                b.deallocate(big.start, size),
                Err(Error::SizeMismatch {
                    addr: big.start,
                    allocated: 5120,
                    given: size
                })
            );
        }
        let free_block = a.start + 512;
        assert_eq!(
            b.deallocate(free_block, 512),
            Err(Error::DoubleFree { addr: free_block })
        );
        assert_eq!(snapshot(&b), before);
        b.audit().unwrap();
        b.deallocate(a.start, 500).unwrap();
        b.deallocate(big.start, 5000).unwrap();
        assert_eq!(b.stats().live_blocks + b.stats().large_allocations, 0);
    }

    #[test]
    fn a_bin_added_later_does_not_break_frees_of_older_blocks() {
        let mut b = B::new(SimUpstream::new(1 << 30));
        b.add_bin(4096).unwrap();
        let old = b.allocate(1000, 256).unwrap(); // 4096-byte bin
        let old_large = b.allocate(6000, 256).unwrap(); // upstream
        b.add_bin(1024).unwrap();
        b.add_bin(8192).unwrap();
        assert_eq!(b.bin_for(1000), Some(0));
        b.deallocate(old.start, 1000).unwrap();
        b.deallocate(old_large.start, 6000).unwrap();
        assert_eq!(b.stats().live_blocks, 0);
        assert_eq!(b.stats().large_allocations, 0);
        b.audit().unwrap();
    }

    #[test]
    fn metadata_exhaustion_of_large_records() {
        let mut b: Binning<SimUpstream, Inline<16, 2>, 4> = Binning::new(SimUpstream::new(1 << 30));
        b.add_bin(256).unwrap();
        b.allocate(4096, 256).unwrap();
        b.allocate(4096, 256).unwrap();
        let in_use = b.upstream().in_use();
        assert_eq!(
            b.allocate(4096, 256),
            Err(Error::MetadataExhausted { capacity: 2 })
        );
        assert_eq!(b.upstream().in_use(), in_use);
        b.audit().unwrap();
    }

    #[test]
    fn upstream_refusing_a_large_free_changes_nothing() {
        struct Stubborn(SimUpstream);
        impl Upstream for Stubborn {
            fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
                self.0.allocate(size, align)
            }
            fn deallocate(&mut self, range: Range) -> Result<(), Error> {
                Err(Error::Backend {
                    call: "stubborn",
                    code: range.len as u32,
                })
            }
        }
        let mut b: Binning<Stubborn, Heap> = Binning::new(Stubborn(SimUpstream::new(1 << 20)));
        let r = b.allocate(512, 256).unwrap();
        assert!(matches!(
            b.deallocate(r.start, 512),
            Err(Error::Backend { .. })
        ));
        assert_eq!(b.large_allocations(), &[r]);
        assert!(b.release_all().is_err());
        assert_eq!(b.stats().upstream_bytes(), 0);
    }

    #[test]
    fn drop_gives_everything_back() {
        let mut up = SimUpstream::new(1 << 30);
        {
            let mut b: Binning<&mut SimUpstream, Heap> =
                Binning::with_exponents(&mut up, 8, 12).unwrap();
            for size in [1, 300, 4096, 5000, 1 << 20] {
                b.allocate(size, 256).unwrap();
            }
            assert!(b.upstream().in_use() > 0);
        }
        assert_eq!(up.in_use(), 0);
    }

    #[test]
    fn exponents_out_of_range_are_errors() {
        assert_eq!(
            B::with_exponents(SimUpstream::new(1), 8, 40).map(|_| ()),
            Err(Error::TooLarge {
                requested: 1 << 40,
                max: crate::algo::MAX_BLOCK_SIZE
            })
        );
        assert_eq!(
            B::with_exponents(SimUpstream::new(1), 64, 64).map(|_| ()),
            Err(Error::TooLarge {
                requested: u64::MAX,
                max: crate::algo::MAX_BLOCK_SIZE
            })
        );
        assert_eq!(
            B::with_exponents(SimUpstream::new(1), 9, 8)
                .unwrap()
                .stats()
                .bins,
            0
        );
    }
}
