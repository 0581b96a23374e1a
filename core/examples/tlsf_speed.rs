//! Times the TLSF list and the pool on RMM-format traces: a tuning aid for the hot paths.
//!
//! ```text
//! python3 ../shared/tools/gen_trace.py /tmp/traces
//! cargo run -p strata-core --release --example tlsf_speed -- /tmp/traces/*.csv
//! ```
//!
//! For each trace it prints the median (and fastest) ns per operation (allocate or free) of
//! `CoalescingList` (one chunk of twice the peak live bytes; growable, preallocated, and
//! preallocated without an address table, freeing by handle) and of `Pool` over `SimUpstream`
//! (initial size the same; freeing by address and by handle), plus the replay loop alone and
//! the metadata the list held at the end. The comparison with the peer crates is
//! `cargo bench --bench peers`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use strata_core::algo::{BlockHandle, CoalescingList, HandlesOnly, Pool, PoolConfig};
use strata_core::{Range, SimUpstream};

#[derive(Clone, Copy)]
enum Step {
    Alloc { id: u32, size: u64 },
    Free { id: u32, size: u64 },
}

struct Workload {
    steps: Vec<Step>,
    ids: usize,
    peak: u64,
}

fn load(path: &str) -> Workload {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut live: HashMap<u64, (u32, u64)> = HashMap::new();
    let (mut steps, mut ids, mut used, mut peak) = (Vec::new(), 0u32, 0u64, 0u64);
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let ptr = u64::from_str_radix(cols[3].trim_start_matches("0x"), 16).expect("pointer");
        let size: u64 = cols[4].parse().expect("size");
        match cols[2] {
            "allocate" => {
                live.insert(ptr, (ids, size));
                steps.push(Step::Alloc { id: ids, size });
                ids += 1;
                used += size.next_multiple_of(256);
                peak = peak.max(used);
            }
            "free" => {
                let (id, size) = live.remove(&ptr).expect("free of a live pointer");
                used -= size.next_multiple_of(256);
                steps.push(Step::Free { id, size });
            }
            _ => {}
        }
    }
    Workload {
        steps,
        ids: ids as usize,
        peak,
    }
}

/// The replay loop, generic over the subjects: each keeps what it needs to free a block.
trait Subject {
    type Handle: Copy;
    fn alloc(&mut self, size: u64) -> Option<Self::Handle>;
    fn free(&mut self, handle: Self::Handle, size: u64);
}

impl Subject for CoalescingList {
    type Handle = u64;
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<u64> {
        self.allocate(size, 256).ok().map(|r| r.start)
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        self.deallocate(addr, size).expect("valid free");
    }
}

impl Subject for CoalescingList<0, 0, HandlesOnly> {
    type Handle = BlockHandle;
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<BlockHandle> {
        self.allocate_block(size, 256).ok().map(|b| b.handle())
    }
    #[inline(always)]
    fn free(&mut self, handle: BlockHandle, _size: u64) {
        self.deallocate_block(handle).expect("valid free");
    }
}

impl Subject for Pool<SimUpstream> {
    type Handle = u64;
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<u64> {
        self.allocate(size, 256).ok().map(|r| r.start)
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        self.deallocate(addr, size).expect("valid free");
    }
}

impl Subject for Pool<SimUpstream, 0, 0, HandlesOnly> {
    type Handle = BlockHandle;
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<BlockHandle> {
        self.allocate_block(size, 256).ok().map(|b| b.handle())
    }
    #[inline(always)]
    fn free(&mut self, handle: BlockHandle, _size: u64) {
        self.deallocate_block(handle).expect("valid free");
    }
}

/// A bump allocator that never reuses: the cost of the replay loop itself.
struct Bump(u64);

impl Subject for Bump {
    type Handle = u64;
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<u64> {
        let a = self.0;
        self.0 += size.next_multiple_of(256);
        Some(a)
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        black_box((addr, size));
    }
}

#[inline(never)]
fn replay<S: Subject>(s: &mut S, handles: &mut [Option<S::Handle>], steps: &[Step]) -> u64 {
    let mut failed = 0;
    for step in steps {
        match *step {
            Step::Alloc { id, size } => {
                let h = s.alloc(size);
                failed += u64::from(h.is_none());
                handles[id as usize] = h;
            }
            Step::Free { id, size } => {
                if let Some(h) = handles[id as usize].take() {
                    s.free(h, size);
                }
            }
        }
    }
    failed
}

/// Median and fastest ns/op over `REPS` timed replays (after one warm-up), each on a fresh
/// subject, and the failures of the last.
fn time<S: Subject>(w: &Workload, mut make: impl FnMut() -> S) -> (f64, f64, u64) {
    const REPS: usize = 15;
    let mut samples = Vec::new();
    let mut failed = 0;
    for rep in 0..=REPS {
        let mut s = make();
        let mut handles = vec![None; w.ids];
        let t0 = Instant::now();
        failed = replay(black_box(&mut s), &mut handles, black_box(&w.steps));
        let dt = t0.elapsed().as_nanos() as f64 / w.steps.len() as f64;
        black_box(&s);
        if rep > 0 {
            samples.push(dt);
        }
    }
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[0], failed)
}

/// The most nodes the list uses on the workload, and its metadata at the end.
fn peak_nodes(w: &Workload, capacity: u64) -> (usize, usize) {
    let mut l = CoalescingList::new();
    l.add_chunk(Range::new(1 << 40, capacity)).expect("chunk");
    let mut addrs = vec![None; w.ids];
    let mut peak = 0;
    for step in &w.steps {
        match *step {
            Step::Alloc { id, size } => {
                addrs[id as usize] = l.alloc(size);
                peak = peak.max(l.nodes_in_use());
            }
            Step::Free { id, size } => {
                if let Some(a) = addrs[id as usize].take() {
                    l.free(a, size);
                }
            }
        }
    }
    (peak, l.metadata_bytes())
}

fn main() {
    let paths: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if paths.is_empty() {
        eprintln!("usage: tlsf_speed TRACE.csv ...");
        std::process::exit(2);
    }
    println!(
        "ns/op: median (fastest) of 15 replays; the list alone has one chunk of 2x peak bytes"
    );
    for path in &paths {
        let w = load(path);
        let capacity = (2 * w.peak).next_multiple_of(256);
        let chunk = Range::new(1 << 40, capacity);
        let (nodes, metadata) = peak_nodes(&w, capacity);
        let (list, list_min, list_failed) = time(&w, || {
            let mut l = CoalescingList::new();
            l.add_chunk(chunk).expect("chunk");
            l
        });
        let (pre, pre_min, _) = time(&w, || {
            let mut l = CoalescingList::with_capacity(nodes).expect("heap");
            l.add_chunk(chunk).expect("chunk");
            l
        });
        let (handles, handles_min, _) = time(&w, || {
            let mut l = CoalescingList::<0, 0, HandlesOnly>::preallocated(nodes).expect("heap");
            l.add_chunk(chunk).expect("chunk");
            l
        });
        let config = PoolConfig::new(capacity);
        let (pool, pool_min, pool_failed) = time(&w, || {
            Pool::new(SimUpstream::new(capacity), config).expect("pool")
        });
        let (pool_h, pool_h_min, _) = time(&w, || {
            let list = CoalescingList::<0, 0, HandlesOnly>::preallocated(nodes).expect("heap");
            Pool::with_list(SimUpstream::new(capacity), list, config).expect("pool")
        });
        let (bump, bump_min, _) = time(&w, || Bump(0));
        println!(
            "{path}: {} ops, peak {nodes} nodes, metadata {} KiB at the end\n  \
             list {list:.1} ({list_min:.1}) [{list_failed} failed]; preallocated {pre:.1} \
             ({pre_min:.1}); by handle {handles:.1} ({handles_min:.1})\n  \
             pool {pool:.1} ({pool_min:.1}) [{pool_failed} failed]; by handle {pool_h:.1} \
             ({pool_h_min:.1}); replay loop alone {bump:.1} ({bump_min:.1})",
            w.steps.len(),
            metadata / 1024
        );
    }
}
