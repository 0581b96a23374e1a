//! The thread-safe resources and the adaptors (issue 3): what the stream layer, the lock and the
//! statistics adaptor cost, and how the resources scale with threads.
//!
//! ```text
//! cargo bench --bench resources -- [--trace TRACE.csv] [--allocs N] [--reps N]
//!     [--threads 1,2,4,8,16] [--only single|stats|scaling] [--resource NAME]
//!     [--superblock BYTES]
//! ```
//!
//! The workload is a trace in RMM's CSV log format (`--trace`, read with [`strata::trace`]; every
//! stream of it is replayed as one), or, by default, one generated in-process the way RMM's
//! `random_allocations` benchmark does it: at each step allocate with probability 0.73 (at most
//! `--allocs` allocations, default 100 000, and at most 1 000 live), else free a uniformly chosen
//! live block; sizes log-uniform from 256 B to 1 MiB; at the end everything is freed. Sizes are
//! rounded up to 256 bytes once, outside the timed region.
//!
//! Three parts, each printed as a table:
//!
//! - **single**: one thread, one stream. The plain TLSF list (`CoalescingList`, one chunk of
//!   twice the peak), `algo::Pool` (the same, as its initial size), the locked `resources::Pool`,
//!   and the `StreamOrderedPool` (same initial size, `NoOrdering`), in ns per operation, and the
//!   stream-ordered pool's ratio to the first two (target ≤ 1.2).
//! - **stats**: `resources::Pool` with and without the `Statistics` adaptor on top, on the trace
//!   and on a tight allocate/free loop of one 256-byte block; the difference is the adaptor's
//!   cost per operation (target ≤ 5 ns).
//! - **scaling**: T threads (`--threads`, default 1,2,4,8,16), each on its own stream, each
//!   replaying the whole workload at once on one shared resource over a `SimUpstream`: the
//!   `Arena` (one sub-arena per stream), the `StreamOrderedPool` under both reuse policies
//!   (no initial size) and the single-lock `resources::Pool`; the operations per second of all threads together, and the speedup
//!   over one thread. A control row gives every thread an `algo::Pool` of its own (nothing
//!   shared): the most this machine can scale. Each thread replays the workload once untimed
//!   (the resource grows), then spins at a start line until every thread is there, then replays
//!   it 10 times, timed: steady state, not growth.
//!
//! `--resource NAME` keeps only the scaling rows whose resource name contains `NAME`;
//! `--superblock BYTES` sets the arena's superblock size (default 1 MiB, RMM's).
//!
//! Every figure is the median of `--reps` timed repetitions (default 5), each on a fresh
//! resource, after one untimed warm-up; only the replay loop is timed. Before timing, each
//! resource replays the workload once under a checker (no two live blocks overlap, every block
//! is 256-aligned), so a broken resource cannot look fast.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use strata::adaptors::Statistics;
use strata::algo::{self, ArenaConfig, CoalescingList, PoolConfig};
use strata::resources::{Arena, NoOrdering, Pool, Reuse, StreamOrderedPool};
use strata::trace::{Op, Trace};
use strata::{MemoryResource, Range, SimUpstream, StreamKey};

/// The alignment of every request, and the granularity sizes are rounded to.
const ALIGN: u64 = 256;

/// The simulated device's capacity for the scaling runs (no memory behind it).
const SIM_CAPACITY: u64 = 1 << 44;

/// One replay step; sizes are rounded up to [`ALIGN`].
#[derive(Debug, Clone, Copy)]
enum Step {
    Alloc { id: u32, size: u64 },
    Free { id: u32, size: u64 },
}

/// A workload ready for replay.
#[derive(Debug)]
struct Workload {
    name: String,
    steps: Vec<Step>,
    ids: usize,
    peak_live: u64,
}

impl Workload {
    fn from_steps(name: String, steps: Vec<Step>) -> Workload {
        let (mut live, mut peak, mut ids) = (0u64, 0u64, 0usize);
        for s in &steps {
            match *s {
                Step::Alloc { id, size } => {
                    live += size;
                    peak = peak.max(live);
                    ids = ids.max(id as usize + 1);
                }
                Step::Free { size, .. } => live -= size,
            }
        }
        Workload {
            name,
            steps,
            ids,
            peak_live: peak,
        }
    }

    /// RMM's `random_allocations` shape, generated with a fixed seed.
    fn generate(allocs: u32) -> Workload {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut steps = Vec::new();
        let mut live: Vec<(u32, u64)> = Vec::new();
        let mut count = 0u32;
        while count < allocs || !live.is_empty() {
            let alloc =
                live.is_empty() || (count < allocs && live.len() < 1000 && next() % 100 < 73);
            if alloc {
                // log-uniform in [2^8, 2^20)
                let exp = 8.0 + 12.0 * (next() % 1_000_000) as f64 / 1_000_000.0;
                let size = (exp.exp2() as u64).next_multiple_of(ALIGN);
                steps.push(Step::Alloc { id: count, size });
                live.push((count, size));
                count += 1;
            } else {
                let (id, size) = live.swap_remove((next() % live.len() as u64) as usize);
                steps.push(Step::Free { id, size });
            }
        }
        Workload::from_steps(format!("random_allocations({allocs})"), steps)
    }

    fn load(path: &str) -> Result<Workload, String> {
        let trace = Trace::from_path(path).map_err(|e| format!("{path}: {e}"))?;
        let resolved = trace.resolve().map_err(|e| format!("{path}: {e}"))?;
        let mut steps = Vec::with_capacity(resolved.ops.len());
        for op in &resolved.ops {
            steps.push(match *op {
                Op::Allocate { id, size, .. } => Step::Alloc {
                    id,
                    size: size.max(1).next_multiple_of(ALIGN),
                },
                Op::Free { id, .. } => Step::Free {
                    id,
                    size: resolved.sizes[id as usize].max(1).next_multiple_of(ALIGN),
                },
            });
        }
        Ok(Workload::from_steps(path.to_owned(), steps))
    }
}

/// What a replay drives: an algorithm (`&mut self`) or a shared resource on one stream.
trait Target {
    fn alloc(&mut self, size: u64) -> u64;
    fn free(&mut self, addr: u64, size: u64);
}

impl Target for CoalescingList {
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> u64 {
        self.allocate(size, ALIGN).expect("alloc").start
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        self.deallocate(addr, size).expect("free");
    }
}

impl Target for algo::Pool<SimUpstream> {
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> u64 {
        self.allocate(size, ALIGN).expect("alloc").start
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        self.deallocate(addr, size).expect("free");
    }
}

/// A shared resource, called on one stream.
struct OnStream<'a, R>(&'a R, StreamKey);

impl<R: MemoryResource> Target for OnStream<'_, R> {
    #[inline(always)]
    fn alloc(&mut self, size: u64) -> u64 {
        self.0.allocate(size, ALIGN, self.1).expect("alloc")
    }
    #[inline(always)]
    fn free(&mut self, addr: u64, size: u64) {
        self.0.deallocate(addr, size, ALIGN, self.1).expect("free");
    }
}

/// Replays `w` on `t`; returns the elapsed time.
#[inline(always)]
fn replay<T: Target>(w: &Workload, addrs: &mut [u64], t: &mut T) -> Duration {
    let start = Instant::now();
    for s in &w.steps {
        match *s {
            Step::Alloc { id, size } => addrs[id as usize] = t.alloc(size),
            Step::Free { id, size } => t.free(addrs[id as usize], size),
        }
    }
    start.elapsed()
}

/// Replays `w` on `r` once, on `stream`, checking every block: aligned, overlapping no live one.
fn check<R: MemoryResource>(w: &Workload, r: &R, stream: StreamKey) {
    let mut live: BTreeMap<u64, u64> = BTreeMap::new();
    let mut addrs = vec![0u64; w.ids];
    for s in &w.steps {
        match *s {
            Step::Alloc { id, size } => {
                let a = r.allocate(size, ALIGN, stream).expect("allocation failed");
                assert_eq!(a % ALIGN, 0, "misaligned block");
                if let Some((&b, &n)) = live.range(..=a).next_back() {
                    assert!(b + n <= a, "overlapping blocks");
                }
                if let Some((&b, _)) = live.range(a..).next() {
                    assert!(a + size <= b, "overlapping blocks");
                }
                live.insert(a, size);
                addrs[id as usize] = a;
            }
            Step::Free { id, size } => {
                let a = addrs[id as usize];
                assert_eq!(live.remove(&a), Some(size));
                r.deallocate(a, size, ALIGN, stream).expect("free failed");
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median over `reps` (after a warm-up) of `run()` in ns per operation of `w`.
fn ns_per_op(w: &Workload, reps: usize, mut run: impl FnMut() -> Duration) -> f64 {
    run();
    let ops = w.steps.len() as f64;
    median((0..reps).map(|_| run().as_nanos() as f64 / ops).collect())
}

/// Room for the workload in one chunk: twice its peak.
fn capacity(w: &Workload) -> u64 {
    (2 * w.peak_live).next_multiple_of(ALIGN)
}

fn stream_ordered(initial: u64) -> StreamOrderedPool<SimUpstream, NoOrdering> {
    StreamOrderedPool::new(
        SimUpstream::new(SIM_CAPACITY),
        NoOrdering,
        PoolConfig::new(initial),
    )
    .expect("pool")
}

fn locked_pool(initial: u64) -> Pool<SimUpstream> {
    Pool::new(SimUpstream::new(SIM_CAPACITY), PoolConfig::new(initial)).expect("pool")
}

fn part_single(w: &Workload, reps: usize) {
    let cap = capacity(w);
    let s = StreamKey(1);
    check(w, &stream_ordered(cap), s);
    check(w, &locked_pool(cap), s);
    check(
        w,
        &Arena::new(
            SimUpstream::new(SIM_CAPACITY),
            NoOrdering,
            ArenaConfig::new(4 * cap),
        )
        .expect("arena"),
        s,
    );
    let mut addrs = vec![0u64; w.ids];

    let tlsf = ns_per_op(w, reps, || {
        let mut list = CoalescingList::new();
        list.add_chunk(Range::new(1 << 40, cap)).expect("chunk");
        replay(w, &mut addrs, &mut list)
    });
    let algo_pool = ns_per_op(w, reps, || {
        let mut pool =
            algo::Pool::new(SimUpstream::new(SIM_CAPACITY), PoolConfig::new(cap)).expect("pool");
        replay(w, &mut addrs, &mut pool)
    });
    let locked = ns_per_op(w, reps, || {
        let pool = locked_pool(cap);
        replay(w, &mut addrs, &mut OnStream(&pool, s))
    });
    let so = ns_per_op(w, reps, || {
        let pool = stream_ordered(cap);
        replay(w, &mut addrs, &mut OnStream(&pool, s))
    });
    let arena = ns_per_op(w, reps, || {
        let arena = Arena::new(
            SimUpstream::new(SIM_CAPACITY),
            NoOrdering,
            ArenaConfig::new(4 * cap),
        )
        .expect("arena");
        replay(w, &mut addrs, &mut OnStream(&arena, s))
    });
    println!(
        "\n## single: one thread, one stream ({} ops)\n",
        w.steps.len()
    );
    println!("| resource | ns/op |");
    println!("|---|---:|");
    println!("| algo::CoalescingList (no lock) | {tlsf:.1} |");
    println!("| algo::Pool (no lock) | {algo_pool:.1} |");
    println!("| resources::Pool (lock) | {locked:.1} |");
    println!("| resources::StreamOrderedPool (lock, one stream) | {so:.1} |");
    println!("| resources::Arena (one sub-arena) | {arena:.1} |");
    println!(
        "\nstream_ordered/tlsf = {:.2}, stream_ordered/algo_pool = {:.2}, stream_ordered/locked_pool = {:.2} (target <= 1.2)",
        so / tlsf,
        so / algo_pool,
        so / locked
    );
}

fn part_stats(w: &Workload, reps: usize) {
    let cap = capacity(w);
    let s = StreamKey::DEFAULT;
    let mut addrs = vec![0u64; w.ids];
    let plain = ns_per_op(w, reps, || {
        let pool = locked_pool(cap);
        replay(w, &mut addrs, &mut OnStream(&pool, s))
    });
    let counted = ns_per_op(w, reps, || {
        let pool = Statistics::new(locked_pool(cap));
        let t = replay(w, &mut addrs, &mut OnStream(&pool, s));
        assert_eq!(pool.counts().value, 0);
        t
    });
    // A tight loop: allocate and free one 256-byte block, 1M times (2M operations).
    const LOOP: u32 = 1_000_000;
    let tight = |r: &dyn MemoryResource| {
        let start = Instant::now();
        for _ in 0..LOOP {
            let a = r.allocate(black_box(ALIGN), ALIGN, s).expect("alloc");
            r.deallocate(black_box(a), ALIGN, ALIGN, s).expect("free");
        }
        start.elapsed().as_nanos() as f64 / (2.0 * LOOP as f64)
    };
    let loop_plain = {
        let pool = locked_pool(1 << 20);
        tight(&pool);
        median((0..reps).map(|_| tight(&pool)).collect())
    };
    let loop_counted = {
        let pool = Statistics::new(locked_pool(1 << 20));
        tight(&pool);
        median((0..reps).map(|_| tight(&pool)).collect())
    };
    println!("\n## stats: the Statistics adaptor over resources::Pool\n");
    println!("| workload | plain ns/op | with Statistics ns/op | overhead ns/op |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {} | {plain:.1} | {counted:.1} | {:.1} |",
        w.name,
        counted - plain
    );
    println!(
        "| allocate+free 256 B loop | {loop_plain:.1} | {loop_counted:.1} | {:.1} |",
        loop_counted - loop_plain
    );
    println!("\n(target: overhead <= 5 ns per operation)");
}

/// How many times each thread replays the workload in the timed region of a scaling run: one
/// replay of the default workload takes about 5 ms, about as long as a sleeping thread can
/// take to be woken on a virtual machine, so a single replay measured wake-ups, not the
/// resource.
const SCALING_ROUNDS: usize = 10;

/// A start line that the threads of a scaling run spin on instead of sleeping: every thread
/// starts its timed replays within a few hundred nanoseconds of the others. (A
/// `std::sync::Barrier` puts waiters to sleep; on the 2-core VM the last one woke up to 3 ms
/// late, which made two threads look no faster than one.)
struct StartLine {
    waiting: AtomicUsize,
}

impl StartLine {
    fn new(threads: usize) -> StartLine {
        StartLine {
            waiting: AtomicUsize::new(threads),
        }
    }

    /// Arrives at the line and spins until every thread has.
    fn wait(&self) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        while self.waiting.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
    }
}

/// `threads` threads, each replaying `w` on the target `make(t)` builds for it, once untimed
/// (the warm-up: the resource grows to the workload's needs), then [`SCALING_ROUNDS`] times at
/// the same moment as the others; returns the operations per second of all of them together
/// over the timed replays, from the first thread's start to the last thread's end (each thread
/// reads the clock itself, so a descheduled coordinator cannot shorten the span).
fn scaling_run<T: Target>(w: &Workload, threads: usize, make: &(dyn Fn(usize) -> T + Sync)) -> f64 {
    let line = StartLine::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let line = &line;
                scope.spawn(move || {
                    let mut target = make(t);
                    let mut addrs = vec![0u64; w.ids];
                    // Warm-up: the resource grows to the workload's needs, untimed.
                    replay(w, &mut addrs, &mut target);
                    line.wait();
                    let start = Instant::now();
                    for _ in 0..SCALING_ROUNDS {
                        replay(w, &mut addrs, &mut target);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("a thread");
    let last = spans.iter().map(|s| s.1).max().expect("a thread");
    (threads * SCALING_ROUNDS * w.steps.len()) as f64 / (last - first).as_secs_f64()
}

/// [`scaling_run`] on one shared resource, thread `t` on stream `t + 1`.
fn shared_run<R: MemoryResource>(w: &Workload, r: &R, threads: usize) -> f64 {
    scaling_run(w, threads, &|t| OnStream(r, StreamKey(t as u64 + 1)))
}

fn part_scaling(
    w: &Workload,
    reps: usize,
    threads: &[usize],
    filter: Option<&str>,
    superblock: u64,
) {
    let cap = capacity(w);
    println!(
        "\n## scaling: T threads, each on its own stream, each replaying {} ops\n",
        w.steps.len()
    );
    println!("| resource | threads | Mops/s | speedup vs 1 thread |");
    println!("|---|---:|---:|---:|");
    let table = |name: &str, run: &dyn Fn(usize) -> f64| {
        if filter.is_some_and(|f| !name.contains(f)) {
            return;
        }
        let mut base = None;
        for &t in threads {
            run(t);
            let ops = median((0..reps).map(|_| run(t)).collect());
            let one = *base.get_or_insert(if t == 1 { ops } else { run(1) });
            println!("| {name} | {t} | {:.2} | {:.2} |", ops / 1e6, ops / one);
        }
    };
    // Room for every thread's peak, four times over (superblocks fragment it).
    let arena_size = (4 * w.peak_live * threads.iter().max().copied().unwrap_or(1) as u64)
        .max(1 << 24)
        .next_multiple_of(ALIGN);
    table("Arena", &|t| {
        let arena = Arena::new(
            SimUpstream::new(SIM_CAPACITY),
            NoOrdering,
            ArenaConfig::new(arena_size).with_superblock_size(superblock),
        )
        .expect("arena");
        shared_run(w, &arena, t)
    });
    // Every thread grows its own heap: no initial size, which the first thread would take.
    table("StreamOrderedPool (GrowFirst)", &|t| {
        let pool = stream_ordered(0).with_reuse(Reuse::GrowFirst);
        shared_run(w, &pool, t)
    });
    table("StreamOrderedPool (StealFirst, RMM's order)", &|t| {
        let pool = stream_ordered(0);
        shared_run(w, &pool, t)
    });
    table("resources::Pool (one lock)", &|t| {
        let pool = locked_pool(cap);
        shared_run(w, &pool, t)
    });
    // The machine's ceiling: every thread on an algo::Pool of its own, nothing shared.
    table("control: one algo::Pool per thread", &|t| {
        scaling_run(w, t, &|_| {
            algo::Pool::new(SimUpstream::new(SIM_CAPACITY), PoolConfig::new(cap)).expect("pool")
        })
    });
}

struct Args {
    trace: Option<String>,
    allocs: u32,
    reps: usize,
    threads: Vec<usize>,
    only: Option<String>,
    resource: Option<String>,
    superblock: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        trace: None,
        allocs: 100_000,
        reps: 5,
        threads: vec![1, 2, 4, 8, 16],
        only: None,
        resource: None,
        superblock: strata::algo::MIN_SUPERBLOCK_SIZE,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--trace" => args.trace = Some(value()?),
            "--allocs" => args.allocs = value()?.parse().map_err(|e| format!("--allocs: {e}"))?,
            "--reps" => args.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--threads" => {
                args.threads = value()?
                    .split(',')
                    .map(|t| t.trim().parse().map_err(|e| format!("--threads: {e}")))
                    .collect::<Result<_, _>>()?;
                if args.threads.contains(&0) {
                    return Err("--threads: 0 threads".into());
                }
            }
            "--only" => args.only = Some(value()?),
            "--resource" => args.resource = Some(value()?),
            "--superblock" => {
                args.superblock = value()?.parse().map_err(|e| format!("--superblock: {e}"))?
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("resources bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let w = match &args.trace {
        Some(path) => match Workload::load(path) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("resources bench: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Workload::generate(args.allocs),
    };
    println!(
        "# resources bench: {} ({} ops, peak live {} B), median of {} reps",
        w.name,
        w.steps.len(),
        w.peak_live,
        args.reps
    );
    let run = |part: &str| args.only.as_deref().is_none_or(|o| o == part);
    if run("single") {
        part_single(&w, args.reps);
    }
    if run("stats") {
        part_stats(&w, args.reps);
    }
    if run("scaling") {
        part_scaling(
            &w,
            args.reps,
            &args.threads,
            args.resource.as_deref(),
            args.superblock,
        );
    }
    ExitCode::SUCCESS
}
