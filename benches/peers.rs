//! strata against the peer crates that manage abstract address ranges (issue 2).
//!
//! ```text
//! cargo bench --bench peers -- TRACE.csv [TRACE.csv ...]
//!     [--reps N] [--capacity X] [--no-search] [--only NAME ...] [--wall]
//! ```
//!
//! Every trace (RMM's CSV log format) is parsed and resolved with [`strata::trace`] before any
//! timing starts, then replayed against each allocator:
//!
//! - `strata-pool`: [`strata::algo::Pool`] over a [`strata::SimUpstream`], its initial size and
//!   maximum the whole capacity, so it never grows during a replay;
//! - `strata-tlsf`: [`strata::algo::CoalescingList`] with the capacity as its one chunk;
//!
//!   these two free by address (`deallocate(addr, size)`, RMM's interface, what strata's
//!   memory resources pay), so they look the block up in the list's address table;
//! - `strata-pool-h`, `strata-tlsf-h`: the same pool and list built with
//!   [`strata::algo::HandlesOnly`] (no address table), allocating with `allocate_block` and
//!   freeing with the 8-byte [`BlockHandle`] it returned (`deallocate_block`: node index +
//!   generation check, no lookup), as offset-allocator and xalloc free by the handle their
//!   `allocate` returned;
//!
//! - `strata-pool-best`: `strata-pool-h` with its list built with [`Fit::Best`] (bounded
//!   address-ordered best fit, carved from the block's start) instead of TLSF's good fit: the
//!   configuration for the least memory;
//!
//!   all strata subjects get their metadata preallocated (`CoalescingList::with_capacity`
//!   / `preallocated`), as offset-allocator (`with_max_allocs`) and xalloc (`with_capacity`) do:
//!   2 × the trace's peak live blocks + 64 nodes. Their adapters are `#[inline(always)]`, as
//!   strata's own hot paths are, so the replay loop calls strata as a user's loop would (the
//!   peers' adapters measured the same with `#[inline(always)]`: their crates' functions stay
//!   calls either way);
//! - `range-alloc` 0.1.5: best fit over a sorted free-range vector, `allocate_range_aligned(size,
//!   256)`, in bytes;
//! - `offset-allocator` 0.2.0: u32 sizes and no alignment argument, so it counts in 256-byte
//!   units (a size of `n` units is `256·n` bytes; offsets are then 256-aligned by construction);
//!   it also rounds every request up to one of its float-like bins (up to 12.5% more);
//! - `buddy_system_allocator` 0.13.0: `FrameAllocator` (binary buddy, sizes rounded up to a power
//!   of two) in 256-byte frames; a block of `2^k` frames is aligned to `2^k` frames;
//! - `xalloc` 0.2.7: `SysTlsf<u64>` in bytes, `alloc_aligned(size, 256)`.
//!
//! Every request is rounded up to a multiple of 256 bytes before it reaches any allocator (as RMM
//! and strata do on a device), and every allocator gets alignment 256 (through its API where it
//! has one, by the unit size otherwise). The rounding is done once, outside the timed region.
//!
//! For each trace the benchmark prints, per allocator:
//!
//! - `ns/op`: the median over `--reps` timed repetitions (default 7, after one untimed warm-up)
//!   of the replay's time divided by its operation count (allocations and frees); `(fastest)`
//!   is the quickest repetition. Each repetition replays on a fresh allocator and a fresh handle
//!   table, both built outside the timed region; only the loop over the operations is timed.
//!   The time is the thread's CPU time on Linux (so time spent descheduled while other
//!   processes compete for the cores is not counted; the replay makes no system call), wall
//!   time elsewhere or with `--wall`. The repetitions are interleaved: each round runs every
//!   allocator once, starting from a different one each round;
//! - `failed`: the allocations it refused at the timed capacity (then the matching frees are
//!   skipped, so its `ns/op` covers slightly different work; such rows are marked `*`);
//! - `min cap`: the smallest capacity, as a multiple of the trace's peak live bytes (sizes as
//!   logged, before rounding), at which it replays the whole trace with no failure. Found by
//!   doubling from 1× (up to [`MAX_SEARCH_MULTIPLE`]) to a capacity `hi` that suffices, then
//!   scanning up from `hi / 2` in steps of `hi / 800` (0.0025× for the usual `hi` of 2×) to
//!   the first capacity that suffices, verified by a full checked replay. A scan, not a
//!   bisection, because failure is not monotone in capacity near the boundary (an allocator
//!   may fail at 1.065× and succeed at 1.0625×): a bisection's answer depends on where it
//!   happens to probe.
//!
//! The timed capacity is the same for all allocators: `--capacity` times the peak live bytes
//! (default 2×), rounded up to 256 bytes.
//!
//! Before any timing, every allocator replays the trace once under a checker that keeps the live
//! blocks in an ordered map and panics if a block is misaligned, lies outside the allocator's
//! range, or overlaps a live block (and, for strata, if `check_invariants` fails at the peak or
//! at the end): a broken allocator cannot look fast. For strata it also prints the metadata
//! bytes per block.
//!
//! `--only NAME` (repeatable) keeps only the named allocators, e.g. to profile one with `perf`.
//! With no trace, it replays the bundled `examples/traces/sample.csv` (so a plain `cargo bench`
//! runs it too).
//!
//! Before it, one line each for `strata-pool-h` and `strata-pool-best`: `worst
//! capacity_vs_best_peer`, the largest over the traces of its minimum capacity divided by the
//! smallest peer's (at most 1: it needs no more memory than any peer).
//!
//! The last line is `worst ratio_vs_best_peer=<x> (strata-pool-h: ...)`: the largest, over the
//! traces, of `strata-pool-h`'s ns/op divided by the fastest peer's ns/op on that trace. The
//! headline is the handle form because the peers are called through their own handle APIs:
//! it is the like-for-like comparison. The line before it gives the same for `strata-pool`,
//! the address form, which is what strata's memory resources (freed by pointer) pay.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::num::NonZeroU64;
use std::process::ExitCode;
use std::time::Instant;

use strata::algo::{BlockHandle, CoalescingList, Fit, HandlesOnly, Pool, PoolConfig};
use strata::trace::{Op, Trace};
use strata::{Range, SimUpstream};

/// The alignment every allocator is held to, and the granularity sizes are rounded to.
const ALIGN: u64 = 256;

/// The largest capacity, as a multiple of the peak live bytes, the capacity search tries.
const MAX_SEARCH_MULTIPLE: f64 = 64.0;

/// The capacity search's scan step, as a fraction of the bracket's upper end: 0.0025× the
/// peak live bytes for the usual bracket 1×..2×.
const SEARCH_STEP: f64 = 0.00125;

/// The trace replayed when none is given (the README's sample: 5 000 operations on 2 streams).
const SAMPLE_TRACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/traces/sample.csv");

/// Where `strata-tlsf`'s one chunk starts (any 256-aligned non-zero address would do).
const TLSF_BASE: u64 = 1 << 40;

/// One replay step: sizes are already rounded up to [`ALIGN`].
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Allocate `size` bytes; the block is known as `id` from now on.
    Alloc { id: u32, size: u64 },
    /// Free block `id`, which was allocated with `size` bytes.
    Free { id: u32, size: u64 },
}

/// A trace made ready for replay.
#[derive(Debug)]
struct Workload {
    /// The file name, for the report.
    name: String,
    /// The operations, in trace order.
    steps: Vec<Step>,
    /// How many allocation ids the trace uses.
    ids: usize,
    /// The most bytes live at once, with sizes as logged.
    peak_live_bytes: u64,
    /// The most bytes live at once, with sizes rounded up to [`ALIGN`].
    peak_live_rounded: u64,
    /// The most blocks live at once.
    peak_live_blocks: usize,
    /// Allocations never freed by the end of the trace.
    leaked: u64,
}

impl Workload {
    /// Parses and resolves the trace at `path`.
    fn load(path: &str) -> Result<Workload, String> {
        let trace = Trace::from_path(path).map_err(|e| format!("{path}: {e}"))?;
        let resolved = trace.resolve().map_err(|e| format!("{path}: {e}"))?;
        let round = |size: u64| {
            size.checked_next_multiple_of(ALIGN)
                .ok_or_else(|| format!("{path}: size {size} overflows when rounded to {ALIGN}"))
        };
        let mut steps = Vec::with_capacity(resolved.ops.len());
        let (mut live_rounded, mut peak_live_rounded) = (0u64, 0u64);
        let (mut live_blocks, mut peak_live_blocks) = (0usize, 0usize);
        for op in &resolved.ops {
            match *op {
                Op::Allocate { id, size, .. } => {
                    let size = round(size)?;
                    live_rounded += size;
                    live_blocks += 1;
                    peak_live_rounded = peak_live_rounded.max(live_rounded);
                    peak_live_blocks = peak_live_blocks.max(live_blocks);
                    steps.push(Step::Alloc { id, size });
                }
                Op::Free { id, .. } => {
                    let size = round(resolved.sizes[id as usize])?;
                    live_rounded -= size;
                    live_blocks -= 1;
                    steps.push(Step::Free { id, size });
                }
            }
        }
        if resolved.peak_live_bytes == 0 {
            return Err(format!("{path}: the trace allocates nothing"));
        }
        let name = std::path::Path::new(path)
            .file_name()
            .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned());
        Ok(Workload {
            name,
            steps,
            ids: resolved.sizes.len(),
            peak_live_bytes: resolved.peak_live_bytes,
            peak_live_rounded,
            peak_live_blocks,
            leaked: resolved.leaked,
        })
    }

    /// The capacity in bytes for `multiple` × the peak live bytes, rounded up to [`ALIGN`].
    fn capacity(&self, multiple: f64) -> u64 {
        let bytes = (self.peak_live_bytes as f64 * multiple).ceil() as u64;
        bytes.next_multiple_of(ALIGN)
    }
}

/// One allocator under test: the benchmark is generic over this trait, so every replay loop is
/// monomorphised and calls the allocator directly.
trait Subject: Sized {
    /// The name in the report.
    const NAME: &'static str;
    /// Whether this is strata (as opposed to a peer).
    const IS_STRATA: bool = false;
    /// What the allocator needs back to free a block.
    type Handle;

    /// A fresh allocator managing `capacity` bytes (a multiple of [`ALIGN`]). `max_blocks` bounds
    /// the live blocks of the replay, for allocators that preallocate their metadata. `None` when
    /// the allocator cannot represent that capacity.
    fn build(capacity: u64, max_blocks: usize) -> Option<Self>;

    /// Allocates `size` bytes (a multiple of [`ALIGN`]) aligned to [`ALIGN`]: the handle and the
    /// block's start address, or `None` when the allocator refuses.
    fn alloc(&mut self, size: u64) -> Option<(Self::Handle, u64)>;

    /// Frees a block this allocator handed out with `size` bytes.
    fn free(&mut self, handle: Self::Handle, size: u64);

    /// The address range the allocator hands blocks out of, `(start, len)`, for the checker.
    fn bounds(&self) -> (u64, u64);

    /// The allocator's own consistency check, where it has one (run by the checker at the
    /// peak and at the end of the trace).
    fn self_check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Metadata bytes held now and the blocks (live and free) they describe, where the
    /// allocator reports them.
    fn metadata(&self) -> Option<(usize, usize)> {
        None
    }

    /// The allocator's own figure of metadata bytes per block, where it documents one.
    const NODE_BYTES: Option<usize> = None;
}

/// How many metadata nodes the allocators that preallocate them (strata, offset-allocator,
/// xalloc) get for a replay whose live blocks peak at `max_blocks`: one per live block and at
/// most one per free gap between them, plus slack. So none of them grows its metadata inside the
/// timed region.
fn metadata_slots(max_blocks: usize) -> usize {
    2 * max_blocks + 64
}

/// strata's coalescing pool over a simulated device, sized so that it never grows: its initial
/// size and its maximum are the capacity, and so is the device's.
struct StrataPool {
    inner: Pool<SimUpstream>,
    chunk: Range,
}

impl Subject for StrataPool {
    const NAME: &'static str = "strata-pool";
    const IS_STRATA: bool = true;
    const NODE_BYTES: Option<usize> = Some(CoalescingList::<0, 0>::NODE_BYTES);
    /// The block's address; never 0 (the simulated device starts at 2^40), so a handle table
    /// slot is 8 bytes, like offset-allocator's.
    type Handle = NonZeroU64;

    fn build(capacity: u64, max_blocks: usize) -> Option<Self> {
        let config = PoolConfig::new(capacity).with_maximum(capacity);
        let list = CoalescingList::with_capacity(metadata_slots(max_blocks)).ok()?;
        let inner = Pool::with_list(SimUpstream::new(capacity), list, config).ok()?;
        assert_eq!(inner.chunk_count(), 1, "the pool starts with one chunk");
        let chunk = inner.list().chunks().next()?;
        Some(StrataPool { inner, chunk })
    }

    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<(NonZeroU64, u64)> {
        let r = self.inner.allocate(size, ALIGN).ok()?;
        Some((NonZeroU64::new(r.start)?, r.start))
    }

    #[inline(always)]
    fn free(&mut self, start: NonZeroU64, size: u64) {
        if let Err(e) = self.inner.deallocate(start.get(), size) {
            panic!("strata-pool refused the free of a block it handed out: {e}");
        }
    }

    fn bounds(&self) -> (u64, u64) {
        (self.chunk.start, self.chunk.len)
    }

    fn self_check(&self) -> Result<(), String> {
        self.inner.list().check_invariants().map_err(str::to_owned)
    }

    fn metadata(&self) -> Option<(usize, usize)> {
        let list = self.inner.list();
        Some((
            list.metadata_bytes(),
            list.live_blocks() + list.free_blocks(),
        ))
    }
}

/// strata's TLSF coalescing list alone, with the capacity as its one chunk.
struct StrataTlsf {
    inner: CoalescingList,
    chunk: Range,
}

impl Subject for StrataTlsf {
    const NAME: &'static str = "strata-tlsf";
    const IS_STRATA: bool = true;
    const NODE_BYTES: Option<usize> = Some(CoalescingList::<0, 0>::NODE_BYTES);
    /// The block's address; the chunk starts at [`TLSF_BASE`], so it is never 0.
    type Handle = NonZeroU64;

    fn build(capacity: u64, max_blocks: usize) -> Option<Self> {
        let chunk = Range::new(TLSF_BASE, capacity);
        let mut inner = CoalescingList::with_capacity(metadata_slots(max_blocks)).ok()?;
        inner.add_chunk(chunk).ok()?;
        Some(StrataTlsf { inner, chunk })
    }

    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<(NonZeroU64, u64)> {
        let r = self.inner.allocate(size, ALIGN).ok()?;
        Some((NonZeroU64::new(r.start)?, r.start))
    }

    #[inline(always)]
    fn free(&mut self, start: NonZeroU64, size: u64) {
        if let Err(e) = self.inner.deallocate(start.get(), size) {
            panic!("strata-tlsf refused the free of a block it handed out: {e}");
        }
    }

    fn bounds(&self) -> (u64, u64) {
        (self.chunk.start, self.chunk.len)
    }

    fn self_check(&self) -> Result<(), String> {
        self.inner.check_invariants().map_err(str::to_owned)
    }

    fn metadata(&self) -> Option<(usize, usize)> {
        let list = &self.inner;
        Some((
            list.metadata_bytes(),
            list.live_blocks() + list.free_blocks(),
        ))
    }
}

/// strata's coalescing pool freed by handle: as [`StrataPool`], but its list keeps no address
/// table (`HandlesOnly`) and blocks are freed with the [`BlockHandle`] `allocate_block`
/// returned (`deallocate_block`: the node index, checked against a generation), as
/// offset-allocator and xalloc free by handle. With `BEST`, `strata-pool-best`: the same with
/// its list picking blocks by [`Fit::Best`] (bounded address-ordered best fit, carved from the
/// block's start) instead of TLSF's good fit.
struct StrataPoolH<const BEST: bool = false> {
    inner: Pool<SimUpstream, 0, 0, HandlesOnly>,
    chunk: Range,
}

impl<const BEST: bool> Subject for StrataPoolH<BEST> {
    const NAME: &'static str = if BEST {
        "strata-pool-best"
    } else {
        "strata-pool-h"
    };
    const IS_STRATA: bool = true;
    const NODE_BYTES: Option<usize> = Some(CoalescingList::<0, 0, HandlesOnly>::NODE_BYTES);
    /// The block's node and generation: 8 bytes, and `Option<BlockHandle>` too, like
    /// offset-allocator's handle.
    type Handle = BlockHandle;

    fn build(capacity: u64, max_blocks: usize) -> Option<Self> {
        let config = PoolConfig::new(capacity).with_maximum(capacity);
        let fit = if BEST { Fit::Best } else { Fit::Good };
        let list = CoalescingList::preallocated(metadata_slots(max_blocks))
            .ok()?
            .with_fit(fit);
        let inner = Pool::with_list(SimUpstream::new(capacity), list, config).ok()?;
        assert_eq!(inner.chunk_count(), 1, "the pool starts with one chunk");
        let chunk = inner.list().chunks().next()?;
        Some(StrataPoolH { inner, chunk })
    }

    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<(BlockHandle, u64)> {
        let b = self.inner.allocate_block(size, ALIGN).ok()?;
        Some((b.handle(), b.start()))
    }

    #[inline(always)]
    fn free(&mut self, handle: BlockHandle, _size: u64) {
        if let Err(e) = self.inner.deallocate_block(handle) {
            panic!(
                "{} refused the free of a block it handed out: {e}",
                Self::NAME
            );
        }
    }

    fn bounds(&self) -> (u64, u64) {
        (self.chunk.start, self.chunk.len)
    }

    fn self_check(&self) -> Result<(), String> {
        self.inner.list().check_invariants().map_err(str::to_owned)
    }

    fn metadata(&self) -> Option<(usize, usize)> {
        let list = self.inner.list();
        Some((
            list.metadata_bytes(),
            list.live_blocks() + list.free_blocks(),
        ))
    }
}

/// strata's TLSF list alone, freed by handle (`HandlesOnly`, `deallocate_block`).
struct StrataTlsfH {
    inner: CoalescingList<0, 0, HandlesOnly>,
    chunk: Range,
}

impl Subject for StrataTlsfH {
    const NAME: &'static str = "strata-tlsf-h";
    const IS_STRATA: bool = true;
    const NODE_BYTES: Option<usize> = Some(CoalescingList::<0, 0, HandlesOnly>::NODE_BYTES);
    type Handle = BlockHandle;

    fn build(capacity: u64, max_blocks: usize) -> Option<Self> {
        let chunk = Range::new(TLSF_BASE, capacity);
        let mut inner = CoalescingList::preallocated(metadata_slots(max_blocks)).ok()?;
        inner.add_chunk(chunk).ok()?;
        Some(StrataTlsfH { inner, chunk })
    }

    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<(BlockHandle, u64)> {
        let b = self.inner.allocate_block(size, ALIGN).ok()?;
        Some((b.handle(), b.start()))
    }

    #[inline(always)]
    fn free(&mut self, handle: BlockHandle, _size: u64) {
        if let Err(e) = self.inner.deallocate_block(handle) {
            panic!("strata-tlsf-h refused the free of a block it handed out: {e}");
        }
    }

    fn bounds(&self) -> (u64, u64) {
        (self.chunk.start, self.chunk.len)
    }

    fn self_check(&self) -> Result<(), String> {
        self.inner.check_invariants().map_err(str::to_owned)
    }

    fn metadata(&self) -> Option<(usize, usize)> {
        let list = &self.inner;
        Some((
            list.metadata_bytes(),
            list.live_blocks() + list.free_blocks(),
        ))
    }
}

/// range-alloc: best fit over a sorted vector of free ranges, in bytes.
struct RangeAlloc(range_alloc::RangeAllocator<u64>);

impl Subject for RangeAlloc {
    const NAME: &'static str = "range-alloc";
    type Handle = u64;

    fn build(capacity: u64, _max_blocks: usize) -> Option<Self> {
        Some(RangeAlloc(range_alloc::RangeAllocator::new(0..capacity)))
    }

    #[inline]
    fn alloc(&mut self, size: u64) -> Option<(u64, u64)> {
        let r = self.0.allocate_range_aligned(size, ALIGN).ok()?;
        Some((r.start, r.start))
    }

    #[inline]
    fn free(&mut self, start: u64, size: u64) {
        self.0.free_range(start..start + size);
    }

    fn bounds(&self) -> (u64, u64) {
        let r = self.0.initial_range();
        (r.start, r.end - r.start)
    }
}

/// offset-allocator: u32 only and no alignment, so it counts in [`ALIGN`]-byte units.
struct OffsetAlloc {
    inner: offset_allocator::Allocator<u32>,
    units: u32,
}

impl Subject for OffsetAlloc {
    const NAME: &'static str = "offset-allocator";
    type Handle = offset_allocator::Allocation<u32>;

    fn build(capacity: u64, max_blocks: usize) -> Option<Self> {
        let units = u32::try_from(capacity / ALIGN).ok()?;
        let nodes = u32::try_from(metadata_slots(max_blocks))
            .ok()?
            .max(128 * 1024);
        Some(OffsetAlloc {
            inner: offset_allocator::Allocator::with_max_allocs(units, nodes),
            units,
        })
    }

    #[inline]
    fn alloc(&mut self, size: u64) -> Option<(Self::Handle, u64)> {
        let a = self.inner.allocate(u32::try_from(size / ALIGN).ok()?)?;
        Some((a, u64::from(a.offset) * ALIGN))
    }

    #[inline]
    fn free(&mut self, handle: Self::Handle, _size: u64) {
        self.inner.free(handle);
    }

    fn bounds(&self) -> (u64, u64) {
        (0, u64::from(self.units) * ALIGN)
    }
}

/// buddy_system_allocator's `FrameAllocator`, in [`ALIGN`]-byte frames.
struct Buddy {
    inner: buddy_system_allocator::FrameAllocator<33>,
    frames: usize,
}

impl Subject for Buddy {
    const NAME: &'static str = "buddy_system_allocator";
    type Handle = usize;

    fn build(capacity: u64, _max_blocks: usize) -> Option<Self> {
        let frames = usize::try_from(capacity / ALIGN).ok()?;
        let mut inner = buddy_system_allocator::FrameAllocator::new();
        inner.add_frame(0, frames);
        Some(Buddy { inner, frames })
    }

    #[inline]
    fn alloc(&mut self, size: u64) -> Option<(usize, u64)> {
        let frame = self.inner.alloc((size / ALIGN) as usize)?;
        Some((frame, frame as u64 * ALIGN))
    }

    #[inline]
    fn free(&mut self, frame: usize, size: u64) {
        self.inner.dealloc(frame, (size / ALIGN) as usize);
    }

    fn bounds(&self) -> (u64, u64) {
        (0, self.frames as u64 * ALIGN)
    }
}

/// xalloc's TLSF with its nodes on the system heap, in bytes.
struct Xalloc {
    inner: xalloc::SysTlsf<u64>,
    capacity: u64,
}

impl Subject for Xalloc {
    const NAME: &'static str = "xalloc";
    type Handle = xalloc::SysTlsfRegion;

    fn build(capacity: u64, max_blocks: usize) -> Option<Self> {
        Some(Xalloc {
            inner: xalloc::SysTlsf::with_capacity(capacity, metadata_slots(max_blocks)),
            capacity,
        })
    }

    #[inline]
    fn alloc(&mut self, size: u64) -> Option<(Self::Handle, u64)> {
        self.inner.alloc_aligned(size, ALIGN)
    }

    #[inline]
    fn free(&mut self, handle: Self::Handle, _size: u64) {
        self.inner
            .dealloc(handle)
            .unwrap_or_else(|_| panic!("xalloc refused the free of a block it handed out"));
    }

    fn bounds(&self) -> (u64, u64) {
        (0, self.capacity)
    }
}

/// A fresh allocator and handle table for one replay.
fn fresh<A: Subject>(w: &Workload, capacity: u64) -> Option<(A, Vec<Option<A::Handle>>)> {
    let a = A::build(capacity, w.peak_live_blocks)?;
    let mut handles = Vec::with_capacity(w.ids);
    handles.resize_with(w.ids, || None);
    Some((a, handles))
}

/// Replays the workload once on `a`: the number of refused allocations. With `stop_on_failure`
/// it returns at the first refusal (for the capacity search).
#[inline(never)]
fn replay<A: Subject>(
    a: &mut A,
    handles: &mut [Option<A::Handle>],
    steps: &[Step],
    stop_on_failure: bool,
) -> u64 {
    let mut failed = 0;
    for step in steps {
        match *step {
            Step::Alloc { id, size } => match a.alloc(size) {
                Some((h, _addr)) => handles[id as usize] = Some(h),
                None => {
                    failed += 1;
                    if stop_on_failure {
                        return failed;
                    }
                }
            },
            Step::Free { id, size } => {
                if let Some(h) = handles[id as usize].take() {
                    a.free(h, size);
                }
            }
        }
    }
    failed
}

/// What the checked replay found.
#[derive(Debug, Clone, Copy)]
struct Checked {
    /// Refused allocations.
    failed: u64,
    /// Metadata bytes and blocks (live + free) when the live block count first reached its
    /// peak, where the allocator reports them.
    metadata_at_peak: Option<(usize, usize)>,
}

/// Replays the workload once at `capacity` under the checker: panics if a block is misaligned,
/// out of the allocator's bounds, or overlaps a live block, or if the allocator's own
/// consistency check fails at the peak or at the end. `None` when the allocator cannot
/// represent the capacity.
fn verify<A: Subject>(w: &Workload, capacity: u64) -> Option<Checked> {
    let (mut a, mut handles) = fresh::<A>(w, capacity)?;
    let (lo, len) = a.bounds();
    let hi = lo + len;
    let mut live: BTreeMap<u64, u64> = BTreeMap::new();
    let mut starts = vec![None; w.ids];
    let mut checked = Checked {
        failed: 0,
        metadata_at_peak: None,
    };
    let self_check = |a: &A, when: &str| {
        if let Err(e) = a.self_check() {
            panic!("{}: {} fails its own check {when}: {e}", w.name, A::NAME);
        }
    };
    let mut peak_seen = false;
    for (i, step) in w.steps.iter().enumerate() {
        match *step {
            Step::Alloc { id, size } => {
                let Some((h, addr)) = a.alloc(size) else {
                    checked.failed += 1;
                    continue;
                };
                let end = addr + size;
                let bad = |what: &str| -> ! {
                    panic!(
                        "{}: {} step {i}: block {addr:#x}..{end:#x} {what}",
                        w.name,
                        A::NAME
                    )
                };
                if addr % ALIGN != 0 {
                    bad("is not 256-aligned");
                }
                if addr < lo || end > hi {
                    bad(&format!("lies outside {lo:#x}..{hi:#x}"));
                }
                if let Some((&s, &e)) = live.range(..end).next_back()
                    && e > addr
                {
                    bad(&format!("overlaps the live block {s:#x}..{e:#x}"));
                }
                live.insert(addr, end);
                starts[id as usize] = Some(addr);
                handles[id as usize] = Some(h);
                if !peak_seen && live.len() == w.peak_live_blocks {
                    peak_seen = true;
                    self_check(&a, "at the peak");
                    checked.metadata_at_peak = a.metadata();
                }
            }
            Step::Free { id, size } => {
                if let Some(h) = handles[id as usize].take() {
                    let addr = starts[id as usize]
                        .take()
                        .expect("a live block has a start");
                    live.remove(&addr);
                    a.free(h, size);
                }
            }
        }
    }
    self_check(&a, "at the end");
    Some(checked)
}

/// Whether the allocator replays the whole workload at `capacity` with no refusal.
fn fits<A: Subject>(w: &Workload, capacity: u64) -> bool {
    match fresh::<A>(w, capacity) {
        Some((mut a, mut handles)) => replay(&mut a, &mut handles, &w.steps, true) == 0,
        None => false,
    }
}

/// The smallest capacity multiple (of the peak live bytes) at which the allocator replays the
/// workload with no refusal: doubling from 1× to a multiple `hi` that suffices, then a scan up
/// from `hi / 2` in steps of [`SEARCH_STEP`]` × hi`. `None` when even [`MAX_SEARCH_MULTIPLE`]
/// is not enough (or not representable).
fn min_capacity<A: Subject>(w: &Workload) -> Option<f64> {
    let mut hi = 1.0;
    while !fits::<A>(w, w.capacity(hi)) {
        hi *= 2.0;
        if hi > MAX_SEARCH_MULTIPLE {
            return None;
        }
    }
    if hi == 1.0 {
        return Some(hi);
    }
    let step = SEARCH_STEP * hi;
    let lo = hi / 2.0;
    let steps = (lo / step).round() as u32;
    if let Some(k) = (1..steps).find(|&k| fits::<A>(w, w.capacity(lo + f64::from(k) * step))) {
        hi = lo + f64::from(k) * step;
    }
    // The answer is checked with a full, checked replay.
    assert_eq!(
        verify::<A>(w, w.capacity(hi)).map(|c| c.failed),
        Some(0),
        "{}: {} failed at the capacity its search found",
        w.name,
        A::NAME
    );
    Some(hi)
}

/// One allocator's results on one trace.
#[derive(Debug)]
struct Row {
    name: &'static str,
    is_strata: bool,
    /// Median ns per operation at the timed capacity (`None`: capacity not representable).
    ns_per_op: Option<f64>,
    /// The fastest repetition's ns per operation (the least disturbed by other processes).
    ns_min: Option<f64>,
    /// Refused allocations at the timed capacity.
    failed: u64,
    /// See [`Checked::metadata_at_peak`].
    metadata_at_peak: Option<(usize, usize)>,
    /// See [`Subject::NODE_BYTES`].
    node_bytes: Option<usize>,
    /// See [`min_capacity`]; `None` also when the search was skipped.
    min_capacity: Option<f64>,
    /// Whether the capacity search ran.
    searched: bool,
}

/// Benchmark settings from the command line.
#[derive(Debug)]
struct Settings {
    traces: Vec<String>,
    reps: usize,
    capacity_multiple: f64,
    search: bool,
    /// Only the allocators with these names (all when empty), e.g. to profile one.
    only: Vec<String>,
    /// How the timed region is measured.
    clock: Clock,
}

/// One replay at `capacity` on a fresh allocator and handle table (built and dropped outside
/// the timed region): nanoseconds per operation.
fn time_once<A: Subject>(w: &Workload, capacity: u64, clock: Clock) -> f64 {
    let (mut a, mut handles) = fresh::<A>(w, capacity).expect("representable: checked first");
    let t0 = clock.now();
    let failed = replay(black_box(&mut a), &mut handles, black_box(&w.steps), false);
    let elapsed = clock.now() - t0;
    black_box((&a, &handles, failed));
    drop((a, handles));
    elapsed as f64 / w.steps.len() as f64
}

/// The clock the timed region is read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// The CPU time of the calling thread (Linux): time the benchmark spends descheduled, when
    /// other processes compete for the cores, is not counted.
    ThreadCpu,
    /// Wall-clock time ([`Instant`]).
    Wall,
}

impl Clock {
    /// The best clock this platform offers: thread CPU time where it can be read.
    fn best() -> Clock {
        if thread_cpu_ns().is_some() {
            Clock::ThreadCpu
        } else {
            Clock::Wall
        }
    }

    /// Nanoseconds since an arbitrary origin, fixed for the process (and the thread, for
    /// [`Clock::ThreadCpu`]).
    #[inline]
    fn now(self) -> u64 {
        match self {
            Clock::ThreadCpu => thread_cpu_ns().expect("checked by Clock::best"),
            Clock::Wall => {
                static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Clock::ThreadCpu => "thread CPU time",
            Clock::Wall => "wall-clock time",
        }
    }
}

/// The calling thread's CPU time in nanoseconds, from `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`
/// (Linux, 64-bit: `time_t` and `long` are both 64 bits there).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_ns() -> Option<u64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock_id: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime (from the C library std links on Linux) writes one `struct
    // timespec`, whose layout `Timespec` matches on 64-bit Linux, through a pointer to a live,
    // writable local, and keeps no reference to it.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// No thread CPU clock here: [`Clock::best`] falls back to wall-clock time.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_ns() -> Option<u64> {
    None
}

/// One allocator as plain function pointers, each monomorphised for it, so the driver can
/// interleave the allocators' repetitions.
struct Entry {
    name: &'static str,
    is_strata: bool,
    node_bytes: Option<usize>,
    verify: fn(&Workload, u64) -> Option<Checked>,
    time_once: fn(&Workload, u64, Clock) -> f64,
    min_capacity: fn(&Workload) -> Option<f64>,
}

impl Entry {
    fn of<A: Subject>() -> Entry {
        Entry {
            name: A::NAME,
            is_strata: A::IS_STRATA,
            node_bytes: A::NODE_BYTES,
            verify: verify::<A>,
            time_once: time_once::<A>,
            min_capacity: min_capacity::<A>,
        }
    }
}

/// Checks, times and sizes every allocator on one workload.
///
/// The timed repetitions are interleaved: repetition `r` runs every allocator once, starting
/// from a different one each time, so a burst of noise from the machine falls on all of them
/// alike rather than on whichever allocator was running.
fn measure(w: &Workload, s: &Settings, entries: &[Entry]) -> Vec<Row> {
    let capacity = w.capacity(s.capacity_multiple);
    let checked: Vec<Option<Checked>> = entries.iter().map(|e| (e.verify)(w, capacity)).collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(s.reps); entries.len()];
    // Repetition 0 is the warm-up.
    for rep in 0..=s.reps {
        for k in 0..entries.len() {
            let i = (k + rep) % entries.len();
            if checked[i].is_some() {
                let ns = (entries[i].time_once)(w, capacity, s.clock);
                if rep > 0 {
                    samples[i].push(ns);
                }
            }
        }
    }
    entries
        .iter()
        .zip(checked)
        .zip(samples)
        .map(|((e, checked), mut samples)| {
            samples.sort_by(f64::total_cmp);
            Row {
                name: e.name,
                is_strata: e.is_strata,
                ns_per_op: checked.map(|_| samples[samples.len() / 2]),
                ns_min: checked.map(|_| samples[0]),
                failed: checked.map_or(0, |c| c.failed),
                metadata_at_peak: checked.and_then(|c| c.metadata_at_peak),
                node_bytes: e.node_bytes,
                min_capacity: if s.search { (e.min_capacity)(w) } else { None },
                searched: s.search,
            }
        })
        .collect()
}

fn parse_args() -> Result<Settings, String> {
    let mut s = Settings {
        traces: Vec::new(),
        reps: 7,
        capacity_multiple: 2.0,
        search: true,
        only: Vec::new(),
        clock: Clock::best(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes this to every harness = false target.
            "--bench" => {}
            "--no-search" => s.search = false,
            "--wall" => s.clock = Clock::Wall,
            "--only" => s
                .only
                .push(args.next().ok_or("--only needs an allocator name")?),
            "--reps" => {
                s.reps = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--reps needs a positive integer")?;
            }
            "--capacity" => {
                s.capacity_multiple = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|x: &f64| (1.0..=MAX_SEARCH_MULTIPLE).contains(x))
                    .ok_or("--capacity needs a multiple of the peak live bytes in 1..=64")?;
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => s.traces.push(path.to_owned()),
        }
    }
    if s.traces.is_empty() {
        // A plain `cargo bench` runs every bench with no arguments: replay the bundled sample.
        eprintln!(
            "no trace given: replaying {SAMPLE_TRACE}\n\
             usage: cargo bench --bench peers -- TRACE.csv [TRACE.csv ...] [--reps N] \
             [--capacity X] [--no-search] [--only NAME] [--wall]"
        );
        s.traces.push(SAMPLE_TRACE.to_owned());
    }
    Ok(s)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn main() -> ExitCode {
    let s = match parse_args() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "peers: {} timed repetitions (median, after 1 warm-up) of {}; timed capacity {:.2}x \
         peak live bytes; sizes rounded up to {ALIGN} B, alignment {ALIGN} B",
        s.reps,
        s.clock.describe(),
        s.capacity_multiple
    );
    let entries = [
        Entry::of::<StrataPool>(),
        Entry::of::<StrataTlsf>(),
        Entry::of::<StrataPoolH>(),
        Entry::of::<StrataTlsfH>(),
        Entry::of::<StrataPoolH<true>>(),
        Entry::of::<RangeAlloc>(),
        Entry::of::<OffsetAlloc>(),
        Entry::of::<Buddy>(),
        Entry::of::<Xalloc>(),
    ];
    let entries: Vec<Entry> = entries
        .into_iter()
        .filter(|e| s.only.is_empty() || s.only.iter().any(|n| n == e.name))
        .collect();
    if entries.is_empty() {
        eprintln!("--only names no allocator");
        return ExitCode::FAILURE;
    }
    // The headline is the handle form (strata-pool-h): the peers are called through their own
    // handle APIs. The address form (strata-pool) is what the memory resources pay.
    let mut worst = Worst::default();
    for path in &s.traces {
        let w = match Workload::load(path) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        println!();
        println!(
            "trace {}: {} ops, {} allocations ({} never freed), peak live {:.1} MiB \
             ({:.1} MiB rounded, {} blocks); timed capacity {:.1} MiB",
            w.name,
            w.steps.len(),
            w.ids,
            w.leaked,
            mib(w.peak_live_bytes),
            mib(w.peak_live_rounded),
            w.peak_live_blocks,
            mib(w.capacity(s.capacity_multiple)),
        );
        let rows = measure(&w, &s, &entries);
        print_rows(&w, &rows, &mut worst);
    }
    println!();
    let fmt = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.3}"));
    println!(
        "worst ratio_vs_best_peer of {} (frees by address, what the resources pay)={}",
        StrataPool::NAME,
        fmt(worst.address)
    );
    for (name, excess) in [
        (StrataPoolH::<false>::NAME, worst.capacity_good),
        (StrataPoolH::<true>::NAME, worst.capacity_best),
    ] {
        println!(
            "worst capacity_vs_best_peer of {name} (min cap / the best peer's; <= 1: no worse)={}",
            fmt(excess)
        );
    }
    println!(
        "worst ratio_vs_best_peer={} ({}: frees by handle, as the peers are called)",
        fmt(worst.handle),
        StrataPoolH::<false>::NAME
    );
    ExitCode::SUCCESS
}

/// The worst ratios to the fastest peer so far, over the traces.
#[derive(Debug, Default)]
struct Worst {
    /// Of `strata-pool-h` (the headline).
    handle: Option<f64>,
    /// Of `strata-pool`.
    address: Option<f64>,
    /// The largest, over the traces, of `strata-pool-h`'s minimum capacity over the best
    /// (smallest) peer's.
    capacity_good: Option<f64>,
    /// The same for `strata-pool-best`.
    capacity_best: Option<f64>,
}

/// Prints one trace's table and folds its strata-pool-h and strata-pool ratios into `worst`.
fn print_rows(w: &Workload, rows: &[Row], worst: &mut Worst) {
    let best_peer = rows
        .iter()
        .filter(|r| !r.is_strata)
        .filter_map(|r| r.ns_per_op.map(|ns| (ns, r.name)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    println!(
        "  {:<24} {:>9} {:>9} {:>8} {:>9} {:>13}",
        "allocator", "ns/op", "(fastest)", "failed", "min cap", "vs best peer"
    );
    let fmt_ns = |ns: Option<f64>| ns.map_or_else(|| "n/a".to_owned(), |ns| format!("{ns:.1}"));
    for r in rows {
        let mark = if r.failed > 0 { "*" } else { " " };
        let cap = match (r.searched, r.min_capacity) {
            (false, _) => "-".to_owned(),
            (true, Some(x)) => format!("{x:.4}x"),
            (true, None) => format!(">{MAX_SEARCH_MULTIPLE:.0}x"),
        };
        let ratio = match (r.ns_per_op, best_peer) {
            (Some(ns), Some((best, _))) => format!("{:.3}", ns / best),
            _ => "n/a".to_owned(),
        };
        println!(
            "  {:<24} {:>8}{mark} {:>9} {:>8} {:>9} {:>13}",
            r.name,
            fmt_ns(r.ns_per_op),
            fmt_ns(r.ns_min),
            r.failed,
            cap,
            ratio
        );
    }
    if rows.iter().any(|r| r.failed > 0) {
        println!("  * refused allocations at the timed capacity: its ns/op covers less work");
    }
    for r in rows {
        if let (Some((bytes, blocks)), Some(node_bytes)) = (r.metadata_at_peak, r.node_bytes) {
            println!(
                "  {}: {node_bytes} B of metadata per block (node{}); held at the peak: \
                 {bytes} B for {blocks} blocks (live + free) = {:.1} B/block, counting the \
                 room preallocated for 2 x peak live blocks + 64",
                r.name,
                if node_bytes > 32 {
                    " + hash bucket"
                } else {
                    ""
                },
                bytes as f64 / blocks.max(1) as f64
            );
        }
    }
    let best_peer_capacity = rows
        .iter()
        .filter(|r| !r.is_strata)
        .filter_map(|r| r.min_capacity.map(|c| (c, r.name)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((peer_cap, peer_name)) = best_peer_capacity {
        for (name, slot) in [
            (StrataPoolH::<false>::NAME, &mut worst.capacity_good),
            (StrataPoolH::<true>::NAME, &mut worst.capacity_best),
        ] {
            if let Some(cap) = rows
                .iter()
                .find(|r| r.name == name)
                .and_then(|r| r.min_capacity)
            {
                let excess = cap / peer_cap;
                println!(
                    "  {}: {name} min cap {cap:.4}x, best peer {peer_name} {peer_cap:.4}x:                      capacity_vs_best_peer={excess:.3}",
                    w.name
                );
                *slot = Some(slot.map_or(excess, |x: f64| x.max(excess)));
            }
        }
    }
    let Some((best, best_name)) = best_peer else {
        return;
    };
    println!("  fastest peer: {best_name} ({best:.1} ns/op)");
    for (name, slot) in [
        (StrataPoolH::<false>::NAME, &mut worst.handle),
        (StrataPool::NAME, &mut worst.address),
    ] {
        if let Some(ns) = rows
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.ns_per_op)
        {
            let ratio = ns / best;
            println!("  {}: {name} ratio_vs_best_peer={ratio:.3}", w.name);
            *slot = Some(slot.map_or(ratio, |x: f64| x.max(ratio)));
        }
    }
}
