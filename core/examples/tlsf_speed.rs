//! Times the TLSF list and the pool on RMM-format traces: a tuning aid for the hot paths.
//!
//! ```text
//! python3 ../shared/tools/gen_trace.py /tmp/traces
//! cargo run -p strata-core --release --example tlsf_speed -- /tmp/traces/*.csv
//! ```
//!
//! For each trace it prints the median ns per operation (allocate or free) of
//! `CoalescingList` (one chunk of twice the peak live bytes) and of `Pool` over `SimUpstream`
//! (initial size the same), plus the metadata the list held at the end. The comparison with
//! the peer crates is `cargo bench --bench peers`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use strata_core::algo::{CoalescingList, Pool, PoolConfig};
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

/// The replay loop, generic over the two subjects.
trait Subject {
    fn alloc(&mut self, size: u64) -> Option<u64>;
    fn free(&mut self, addr: u64, size: u64);
}

impl Subject for CoalescingList {
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<u64> {
        self.allocate(size, 256).ok().map(|r| r.start)
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        self.deallocate(addr, size).expect("valid free");
    }
}

impl Subject for Pool<SimUpstream> {
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> Option<u64> {
        self.allocate(size, 256).ok().map(|r| r.start)
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        self.deallocate(addr, size).expect("valid free");
    }
}

/// A bump allocator that never reuses: the cost of the replay loop itself.
struct Bump(u64);

impl Subject for Bump {
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
fn replay<S: Subject>(s: &mut S, addrs: &mut [u64], steps: &[Step]) -> u64 {
    let mut failed = 0;
    for step in steps {
        match *step {
            Step::Alloc { id, size } => match s.alloc(size) {
                Some(a) => addrs[id as usize] = a,
                None => {
                    failed += 1;
                    addrs[id as usize] = u64::MAX;
                }
            },
            Step::Free { id, size } => {
                let a = addrs[id as usize];
                if a != u64::MAX {
                    s.free(a, size);
                }
            }
        }
    }
    failed
}

fn time<S: Subject>(w: &Workload, mut make: impl FnMut() -> S) -> (f64, u64) {
    let mut samples = Vec::new();
    let mut failed = 0;
    for rep in 0..8 {
        let mut s = make();
        let mut addrs = vec![0u64; w.ids];
        let t0 = Instant::now();
        failed = replay(black_box(&mut s), &mut addrs, black_box(&w.steps));
        let dt = t0.elapsed().as_nanos() as f64 / w.steps.len() as f64;
        black_box(&s);
        if rep > 0 {
            samples.push(dt);
        }
    }
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], failed)
}

/// The most nodes the list uses on the workload.
fn peak_nodes(w: &Workload, capacity: u64) -> usize {
    let mut l = CoalescingList::new();
    l.add_chunk(Range::new(1 << 40, capacity)).expect("chunk");
    let mut addrs = vec![0u64; w.ids];
    let mut peak = 0;
    for step in &w.steps {
        match *step {
            Step::Alloc { id, size } => {
                addrs[id as usize] = l.alloc(size).unwrap_or(u64::MAX);
                peak = peak.max(l.nodes_in_use());
            }
            Step::Free { id, size } => {
                if addrs[id as usize] != u64::MAX {
                    l.free(addrs[id as usize], size);
                }
            }
        }
    }
    peak
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
    for path in &paths {
        let w = load(path);
        let capacity = (2 * w.peak).next_multiple_of(256);
        let (list_ns, list_failed) = time(&w, || {
            let mut l = CoalescingList::new();
            l.add_chunk(Range::new(1 << 40, capacity)).expect("chunk");
            l
        });
        let nodes = peak_nodes(&w, capacity);
        let (pre_ns, _) = time(&w, || {
            let mut l = CoalescingList::with_capacity(nodes).expect("heap");
            l.add_chunk(Range::new(1 << 40, capacity)).expect("chunk");
            l
        });
        let (pool_ns, pool_failed) = time(&w, || {
            Pool::new(SimUpstream::new(capacity), PoolConfig::new(capacity)).expect("pool")
        });
        let (bump_ns, _) = time(&w, || Bump(0));
        let mut l = CoalescingList::new();
        l.add_chunk(Range::new(1 << 40, capacity)).expect("chunk");
        let mut addrs = vec![0u64; w.ids];
        let mut peak_nodes = 0;
        for step in &w.steps {
            match *step {
                Step::Alloc { id, size } => {
                    addrs[id as usize] = l.alloc(size).unwrap_or(u64::MAX);
                    peak_nodes = peak_nodes.max(l.nodes_in_use());
                }
                Step::Free { id, size } => {
                    if addrs[id as usize] != u64::MAX {
                        l.free(addrs[id as usize], size);
                    }
                }
            }
        }
        println!(
            "{path}: {} ops; list {list_ns:.1} ns/op ({list_failed} failed), preallocated {pre_ns:.1}; pool {pool_ns:.1} ns/op \
             ({pool_failed} failed); replay loop alone {bump_ns:.1} ns/op; peak {peak_nodes} nodes, \
             metadata {} KiB at the end",
            w.steps.len(),
            l.metadata_bytes() / 1024
        );
    }
}
