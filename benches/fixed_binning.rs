//! ns per operation (allocate or free) of the fixed-size list and of binning, and their
//! metadata bytes per block.
//!
//! `cargo bench --bench fixed_binning` (release). The workload is RMM's random_allocations
//! shape: a ramp with 73% allocations up to a live-set target, a long steady phase of random
//! allocations and frees of random live blocks, then a drain. The operation list is generated
//! before timing (a fixed-seed splitmix64), so the timed loop runs only the allocator. Each
//! workload runs once untimed (to take its chunks from the upstream), then 7 times (`FB_REPEATS`)
//! timed; the best and the median run are printed.

use std::hint::black_box;
use std::time::Instant;

use strata_core::SimUpstream;
use strata_core::algo::{Binning, FixedConfig, FixedSizeList, Heap};

/// Timed runs per workload (`FB_REPEATS` overrides, e.g. 1 under callgrind).
fn repeats() -> usize {
    std::env::var("FB_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

/// One step of a workload, packed in 8 bytes (half the bytes an enum takes, so the timed loop
/// streams less): bits 0..32 the slot, bits 32..63 the request size, bit 63 set for a free.
/// Allocate into the slot, or free what the slot holds.
#[derive(Clone, Copy)]
struct Op(u64);

impl Op {
    const FREE: u64 = 1 << 63;

    fn alloc(slot: u32, size: u64) -> Self {
        assert!(size < 1 << 31, "request sizes fit in 31 bits");
        Op(u64::from(slot) | size << 32)
    }
    fn free(slot: u32, size: u64) -> Self {
        Op(Self::alloc(slot, size).0 | Self::FREE)
    }
    #[inline(always)]
    fn is_free(self) -> bool {
        self.0 & Self::FREE != 0
    }
    #[inline(always)]
    fn slot(self) -> usize {
        self.0 as u32 as usize
    }
    #[inline(always)]
    fn size(self) -> u64 {
        (self.0 & !Self::FREE) >> 32
    }
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// Builds a workload: the live blocks (slot, size), the slots free for reuse, the ops.
struct Gen<F> {
    rng: SplitMix,
    size: F,
    live: Vec<(u32, u64)>,
    free_slots: Vec<u32>,
    slots: u32,
    ops: Vec<Op>,
}

impl<F: FnMut(&mut SplitMix) -> u64> Gen<F> {
    fn alloc(&mut self) {
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots += 1;
            self.slots - 1
        });
        let size = (self.size)(&mut self.rng);
        self.live.push((slot, size));
        self.ops.push(Op::alloc(slot, size));
    }

    /// Frees a uniformly random live block.
    fn free(&mut self) {
        let i = self.rng.below(self.live.len() as u64) as usize;
        let (slot, size) = self.live.swap_remove(i);
        self.free_slots.push(slot);
        self.ops.push(Op::free(slot, size));
    }
}

/// Ramp (73% allocations) to `live_target` live blocks, `steady` steps of 50/50, then a
/// drain. `size` draws a request size. Returns the ops and the number of slots they use.
fn workload(
    seed: u64,
    live_target: usize,
    steady: usize,
    size: impl FnMut(&mut SplitMix) -> u64,
) -> (Vec<Op>, usize) {
    let mut g = Gen {
        rng: SplitMix(seed),
        size,
        live: Vec::new(),
        free_slots: Vec::new(),
        slots: 0,
        ops: Vec::new(),
    };
    while g.live.len() < live_target {
        if g.live.is_empty() || g.rng.below(100) < 73 {
            g.alloc();
        } else {
            g.free();
        }
    }
    for _ in 0..steady {
        if g.live.is_empty() || g.rng.below(2) == 0 {
            g.alloc();
        } else {
            g.free();
        }
    }
    while !g.live.is_empty() {
        g.free();
    }
    (g.ops, g.slots as usize)
}

/// An allocator under test.
trait Subject {
    fn alloc(&mut self, size: u64) -> u64;
    fn free(&mut self, addr: u64, size: u64);
    /// Replays `ops` once, keeping the live addresses in `addr` (indexed by slot). Each
    /// subject has its own non-generic copy (see [`replay_with`]), so a profiler tells them
    /// apart.
    fn replay(&mut self, ops: &[Op], addr: &mut [u64]);
}

/// The timed loop: one op after another, each allocation's address stored in its slot, each
/// free given the address and the size of its allocation. Nothing else runs.
#[inline(always)]
fn replay_with<S: Subject>(subject: &mut S, ops: &[Op], addr: &mut [u64]) {
    for &op in ops {
        if op.is_free() {
            subject.free(addr[op.slot()], op.size());
        } else {
            addr[op.slot()] = subject.alloc(op.size());
        }
    }
}

impl Subject for FixedSizeList<Sim, Heap> {
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> u64 {
        self.allocate(size, 256).expect("allocate").start
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        self.deallocate(addr, size).expect("free")
    }
    #[inline(never)]
    fn replay(&mut self, ops: &[Op], addr: &mut [u64]) {
        replay_with(self, ops, addr);
    }
}

impl Subject for Binning<Sim, Heap> {
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> u64 {
        self.allocate(size, 256).expect("allocate").start
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        self.deallocate(addr, size).expect("free")
    }
    #[inline(never)]
    fn replay(&mut self, ops: &[Op], addr: &mut [u64]) {
        replay_with(self, ops, addr);
    }
}

/// The harness alone: a bump counter for allocations, nothing for frees. Its ns/op is the
/// cost of the loop, the op list and the slot array, which every subject pays too.
struct Null(u64);

impl Subject for Null {
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> u64 {
        self.0 += size;
        self.0
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        // Keeps the slot read (a real free needs the address) from being optimised away.
        black_box((addr, size));
    }
    #[inline(never)]
    fn replay(&mut self, ops: &[Op], addr: &mut [u64]) {
        replay_with(self, ops, addr);
    }
}

/// A simulated device with room for many chunks.
type Sim = SimUpstream<16384>;

fn sim() -> Sim {
    Sim::with_slots(1 << 45)
}

/// Runs `ops` once untimed and `repeats()` times timed; returns the (best, median) ns per
/// operation.
fn time_ops<S: Subject>(ops: &[Op], slots: usize, subject: &mut S) -> (f64, f64) {
    let mut addr = vec![0u64; slots];
    let mut run = |addr: &mut Vec<u64>| subject.replay(ops, addr);
    run(&mut addr);
    let repeats = repeats();
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            run(&mut addr);
            t.elapsed().as_nanos() as f64 / ops.len() as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[0], times[repeats / 2])
}

fn bench_fixed(block_size: u64, live_target: usize, steady: usize) {
    let (ops, slots) = workload(1, live_target, steady, |_| block_size);
    let config = FixedConfig::new(block_size, 128).expect("valid config");
    let (null_best, _) = time_ops(&ops, slots, &mut Null(0));
    let mut list: FixedSizeList<Sim, Heap> = FixedSizeList::new(sim(), config);
    let (best, median) = time_ops(&ops, slots, &mut list);
    let blocks = list.stats().live_blocks + list.stats().free_blocks;
    let per_block = list.blocks().metadata_bytes() as f64 / blocks as f64;
    println!(
        "fixed    block={block_size:>7} live={live_target:>6} ops={:>8}  best {best:5.2} ns/op  median {median:5.2} ns/op  metadata {per_block:5.2} B/block ({} chunks)  [harness alone {null_best:4.2} ns/op]",
        ops.len(),
        list.stats().chunks,
    );
}

fn bench_binning(min_exp: u32, max_exp: u32, live_target: usize, steady: usize) {
    // Log-uniform sizes over the binned range [1, 2^max_exp].
    let (ops, slots) = workload(2, live_target, steady, |rng| {
        let exp = rng.below(u64::from(max_exp) + 1);
        ((1u64 << exp) + rng.below(1u64 << exp)).min(1 << max_exp)
    });
    let (null_best, _) = time_ops(&ops, slots, &mut Null(0));
    let mut b: Binning<Sim, Heap> = Binning::with_exponents(sim(), min_exp, max_exp).expect("bins");
    let (best, median) = time_ops(&ops, slots, &mut b);
    let s = b.stats();
    let blocks: u64 = b
        .bins()
        .iter()
        .map(|bin| bin.stats().live_blocks + bin.stats().free_blocks)
        .sum();
    assert_eq!(s.large_allocations, 0, "every size is binned");
    println!(
        "binning  bins=2^{min_exp}..2^{max_exp} live={live_target:>6} ops={:>8}  best {best:5.2} ns/op  median {median:5.2} ns/op  metadata {:5.2} B/block  [harness alone {null_best:4.2} ns/op]",
        ops.len(),
        b.metadata_bytes() as f64 / blocks as f64,
    );
}

fn main() {
    // `cargo bench --bench fixed_binning -- fixed` runs only the cases whose name starts with
    // "fixed" (`-- fixed/4k` just one of them).
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let on = |name: &str| filter.as_deref().is_none_or(|f| name.starts_with(f));
    println!(
        "fixed_binning: ns per operation (allocate or free), {} timed runs each",
        repeats()
    );
    if on("fixed/256") {
        bench_fixed(256, 1_000, 1_000_000);
    }
    if on("fixed/4k") {
        bench_fixed(4096, 10_000, 1_000_000);
    }
    if on("fixed/1m") {
        bench_fixed(1 << 20, 100_000, 1_000_000);
    }
    if on("binning/12") {
        bench_binning(8, 12, 1_000, 1_000_000);
    }
    if on("binning/20/10k") {
        bench_binning(8, 20, 10_000, 1_000_000);
    }
    if on("binning/20/100k") {
        bench_binning(8, 20, 100_000, 1_000_000);
    }
}
