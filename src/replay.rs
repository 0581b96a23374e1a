//! Replaying allocation traces against any [`MemoryResource`], and measuring it.
//!
//! This is the engine behind `strata replay` and `strata bench`, usable without the CLI:
//!
//! 1. a [`Plan`] is a trace resolved once into compact steps (allocation ids, sizes, stream
//!    indices), so that a replay does no parsing, hashing or pointer lookup: the address of
//!    allocation `id` lives at index `id` of a `Vec`;
//! 2. a [`Replayer`] runs the plan against a resource. [`Replayer::run`] times only the loop of
//!    `allocate`/`deallocate` calls; what the trace leaves live is freed afterwards, untimed, so
//!    the next run starts from the same state. An allocation the resource refuses is counted
//!    and its free skipped;
//! 3. [`measure`] does what the CLI reports per resource: one recorded run on the fresh
//!    resource (peak live and peak reserved bytes, failed allocations, the memory
//!    [`Timeline`]), which is also the warm-up, then `repeats` timed runs summarised by their
//!    median; [`min_capacity`] searches the smallest device capacity that replays the plan
//!    with no failure.
//!
//! A replay runs on one host thread, in trace order (RMM's replay benchmark also enforces the
//! global order of its threads' events); the logged threads are not replayed as threads. Each
//! distinct stream of the trace is replayed on a stream of its own: the caller gives one
//! [`StreamKey`] per stream (the simulated device's are [`Plan::sim_stream_keys`]; on a GPU,
//! created streams).
//!
//! The simulated device, [`SimDevice`], stands in for a GPU: a byte capacity and an address
//! window, no memory behind it, with growable books (a trace may hold tens of thousands of
//! allocations live at once). It serves as the upstream of the pools and, used directly, as the
//! `cuda` resource of the simulated device (one device allocation per request).
//!
//! ```
//! use strata::replay::{measure, MeasureOptions, Plan, SimDevice};
//! use strata::trace::Trace;
//!
//! let csv = "Thread,Time,Action,Pointer,Size,Stream\n\
//!            1,t,allocate,0x1000,512,0\n\
//!            1,t,allocate,0x2000,1024,1\n\
//!            1,t,free,0x1000,512,0\n\
//!            1,t,free,0x2000,1024,1\n";
//! let plan = Plan::new(&Trace::parse(csv.as_bytes())?.resolve()?);
//! let device = SimDevice::new(1 << 30);
//! let keys = plan.sim_stream_keys();
//! let m = measure(&plan, &device, &keys, &|| device.in_use(), &MeasureOptions::default(), &mut || {})?;
//! assert_eq!(m.peak_live_bytes, 1536);
//! assert_eq!(m.peak_reserved_bytes, 1536);
//! assert_eq!(m.failed_allocations, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The JSON report
//!
//! `strata replay --format json` and `strata bench --format json` print one [`Report`] object,
//! here for `strata replay examples/traces/sample.csv -r pool,async --format json`.
//! Its shape is stable: fields are only ever added, and the `schema` field names the version.
//! Every byte count is an integer number of bytes, every time a floating-point number of
//! nanoseconds.
//!
//! ```json
//! {
//!   "schema": "strata-replay/1",
//!   "device": {
//!     "kind": "sim",
//!     "name": "simulated device",
//!     "note": "--device auto found no GPU: no CUDA driver: libcuda could not be loaded"
//!   },
//!   "trace": {
//!     "source": "examples/traces/sample.csv",
//!     "ops": 5000,
//!     "allocations": 2500,
//!     "frees": 2500,
//!     "streams": 2,
//!     "peak_live_bytes": 8681500797,
//!     "logged_failures": 0,
//!     "leaked": 0
//!   },
//!   "capacity_bytes": 85899345920,
//!   "repeats": 5,
//!   "resources": [
//!     {
//!       "name": "pool",
//!       "ns_per_op_median": 31.3746,
//!       "ns_per_op_min": 26.5254,
//!       "ns_per_op_max": 32.5644,
//!       "peak_live_bytes": 8681500797,
//!       "peak_reserved_bytes": 9177300992,
//!       "min_capacity_bytes": 8740846993,
//!       "min_capacity_ratio": 1.0068359374015732,
//!       "failed_allocations": 0,
//!       "error": null
//!     },
//!     {
//!       "name": "async",
//!       "ns_per_op_median": 0.0,
//!       "ns_per_op_min": 0.0,
//!       "ns_per_op_max": 0.0,
//!       "peak_live_bytes": 0,
//!       "peak_reserved_bytes": 0,
//!       "min_capacity_bytes": null,
//!       "min_capacity_ratio": null,
//!       "failed_allocations": 0,
//!       "error": "needs a GPU: the driver's allocator has no simulated model (use --device cuda)"
//!     }
//!   ]
//! }
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `schema` | `"strata-replay/1"` |
//! | `device.kind` | `"sim"` (simulated device) or `"cuda"` (a GPU) |
//! | `device.name`, `device.note` | the device, and why it was chosen (or its driver and memory) |
//! | `trace.source` | the trace's path, or the generated workload's parameters |
//! | `trace.ops`, `.allocations`, `.frees` | operations replayed (`allocate failure` lines are not) |
//! | `trace.streams` | distinct streams (each replayed on its own stream) |
//! | `trace.peak_live_bytes` | the most bytes the trace holds live at once |
//! | `trace.logged_failures`, `.leaked` | `allocate failure` lines skipped; allocations never freed |
//! | `capacity_bytes` | the memory the timed replays could use (`--capacity`) |
//! | `repeats` | timed replays per resource, after one warm-up |
//! | `resources[].name` | the resource, as `--resource` names it |
//! | `resources[].ns_per_op_median`, `_min`, `_max` | host ns per allocate or free call over the timed replays |
//! | `resources[].peak_live_bytes` | the most bytes live at once in the first replay |
//! | `resources[].peak_reserved_bytes` | the most bytes held from the device in the first replay |
//! | `resources[].min_capacity_bytes`, `_ratio` | the smallest capacity with no failed allocation, and its ratio to `trace.peak_live_bytes` (`null`: not searched or none found) |
//! | `resources[].failed_allocations` | allocations refused in the first replay |
//! | `resources[].error` | why the resource could not be measured, or `null` |
//!
//! Each field is documented on [`Report`], [`DeviceReport`], [`TraceReport`] and
//! [`ResourceReport`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use strata_core::{DEFAULT_ALIGNMENT, Error, MemoryResource, Range, StreamKey, Upstream, align_up};

use crate::trace::{Action, Event, Op, ResolvedTrace, Trace};

/// The alignment every replayed allocation asks for: 256 bytes, as RMM's replayer does.
///
/// ```
/// assert_eq!(strata::replay::ALIGNMENT, 256);
/// ```
pub const ALIGNMENT: u64 = DEFAULT_ALIGNMENT;

/// Marks an allocation that is not live (never made, refused, or freed) in a replay's address
/// table. No real block can start there: a block of at least one byte at `u64::MAX` would end
/// past the address space.
const NOT_LIVE: u64 = u64::MAX;

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Allocate { size: u64, id: u32, stream: u32 },
    Free { size: u64, id: u32, stream: u32 },
}

/// A trace resolved into the compact steps a replay runs.
///
/// ```
/// use strata::replay::Plan;
/// use strata::trace::Trace;
/// let csv = "Thread,Time,Action,Pointer,Size,Stream\n\
///            1,t,allocate,0x1000,512,0\n\
///            1,t,allocate failure,(nil),1024,0\n\
///            1,t,free,0x1000,512,0\n";
/// let plan = Plan::new(&Trace::parse(csv.as_bytes())?.resolve()?);
/// assert_eq!((plan.ops(), plan.allocations(), plan.frees()), (2, 1, 1));
/// assert_eq!(plan.logged_failures(), 1);
/// # Ok::<(), strata::trace::TraceError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    steps: Vec<Step>,
    /// The stream index each allocation was made on, by id (to free leftovers there).
    alloc_stream: Vec<u32>,
    sizes: Vec<u64>,
    streams: Vec<u64>,
    frees: usize,
    peak_live_bytes: u64,
    logged_failures: u64,
    leaked: u64,
}

impl Plan {
    /// Builds the plan of a resolved trace.
    ///
    /// ```
    /// let plan = strata::replay::Plan::new(&strata::trace::ResolvedTrace::default());
    /// assert_eq!(plan.ops(), 0);
    /// ```
    pub fn new(resolved: &ResolvedTrace) -> Plan {
        let mut alloc_stream = vec![0u32; resolved.sizes.len()];
        let mut frees = 0;
        let steps = resolved
            .ops
            .iter()
            .map(|op| match *op {
                Op::Allocate { id, size, stream } => {
                    alloc_stream[id as usize] = stream;
                    Step::Allocate { size, id, stream }
                }
                Op::Free { id, stream } => {
                    frees += 1;
                    Step::Free {
                        size: resolved.sizes[id as usize],
                        id,
                        stream,
                    }
                }
            })
            .collect();
        Plan {
            steps,
            alloc_stream,
            sizes: resolved.sizes.clone(),
            streams: resolved.streams.clone(),
            frees,
            peak_live_bytes: resolved.peak_live_bytes,
            logged_failures: resolved.logged_failures,
            leaked: resolved.leaked,
        }
    }

    /// Operations (allocations and frees) in one replay.
    ///
    /// ```
    /// # let plan = strata::replay::Plan::new(&Default::default());
    /// assert_eq!(plan.ops(), plan.allocations() + plan.frees());
    /// ```
    pub fn ops(&self) -> usize {
        self.steps.len()
    }

    /// Allocations in one replay.
    ///
    /// ```
    /// # let plan = strata::replay::Plan::new(&Default::default());
    /// assert_eq!(plan.allocations(), 0);
    /// ```
    pub fn allocations(&self) -> usize {
        self.sizes.len()
    }

    /// Frees in one replay.
    ///
    /// ```
    /// # let plan = strata::replay::Plan::new(&Default::default());
    /// assert_eq!(plan.frees(), 0);
    /// ```
    pub fn frees(&self) -> usize {
        self.frees
    }

    /// The distinct stream values of the trace, in order of first appearance.
    ///
    /// ```
    /// # let plan = strata::replay::Plan::new(&Default::default());
    /// assert!(plan.streams().is_empty());
    /// ```
    pub fn streams(&self) -> &[u64] {
        &self.streams
    }

    /// Stream keys for a simulated device: the logged stream values themselves (the key of
    /// value 0 is [`StreamKey::DEFAULT`]), at least one.
    ///
    /// ```
    /// # let plan = strata::replay::Plan::new(&Default::default());
    /// assert_eq!(plan.sim_stream_keys(), vec![strata::StreamKey::DEFAULT]);
    /// ```
    pub fn sim_stream_keys(&self) -> Vec<StreamKey> {
        if self.streams.is_empty() {
            vec![StreamKey::DEFAULT]
        } else {
            self.streams.iter().map(|&s| StreamKey(s)).collect()
        }
    }

    /// The most bytes the trace holds live at once.
    ///
    /// ```
    /// # let plan = strata::replay::Plan::new(&Default::default());
    /// assert_eq!(plan.peak_live_bytes(), 0);
    /// ```
    pub fn peak_live_bytes(&self) -> u64 {
        self.peak_live_bytes
    }

    /// `allocate failure` lines of the trace (counted, not replayed).
    ///
    /// ```
    /// # let plan = strata::replay::Plan::new(&Default::default());
    /// assert_eq!(plan.logged_failures(), 0);
    /// ```
    pub fn logged_failures(&self) -> u64 {
        self.logged_failures
    }

    /// Allocations the trace never frees (a replay frees them afterwards, untimed).
    ///
    /// ```
    /// # let plan = strata::replay::Plan::new(&Default::default());
    /// assert_eq!(plan.leaked(), 0);
    /// ```
    pub fn leaked(&self) -> u64 {
        self.leaked
    }

    /// The largest single allocation of the trace (0 for a trace without allocations).
    ///
    /// ```
    /// # let plan = strata::replay::Plan::new(&Default::default());
    /// assert_eq!(plan.largest_allocation(), 0);
    /// ```
    pub fn largest_allocation(&self) -> u64 {
        self.sizes.iter().copied().max().unwrap_or(0)
    }
}

/// Why a replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// The resource refused to free a block it had handed out: a bug in the resource.
    Free {
        /// The index of the operation in the plan.
        op: usize,
        /// The block's address.
        addr: u64,
        /// What the resource said.
        error: Error,
    },
    /// Fewer stream keys than the trace has streams.
    Streams {
        /// Streams in the trace.
        needed: usize,
        /// Keys given.
        given: usize,
    },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Free { op, addr, error } => write!(
                f,
                "operation {op}: the resource refused to free its own block {addr:#x}: {error}"
            ),
            ReplayError::Streams { needed, given } => {
                write!(
                    f,
                    "the trace has {needed} streams but {given} keys were given"
                )
            }
        }
    }
}

impl std::error::Error for ReplayError {}

/// What one [`Replayer::run`] measured.
///
/// ```
/// use strata::replay::{Plan, Replayer, SimDevice};
/// let plan = Plan::new(&Default::default());
/// let run = Replayer::new(&plan, vec![strata::StreamKey::DEFAULT])?.run(&SimDevice::new(0))?;
/// assert_eq!((run.failed_allocations, run.ops), (0, 0));
/// # Ok::<(), strata::replay::ReplayError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Wall time of the loop of allocate and free calls (nothing else).
    pub elapsed: Duration,
    /// Operations run.
    pub ops: usize,
    /// Allocations the resource refused.
    pub failed_allocations: u64,
}

impl Run {
    /// Nanoseconds per operation (0 for an empty plan).
    ///
    /// ```
    /// use std::time::Duration;
    /// let run = strata::replay::Run { elapsed: Duration::from_micros(3), ops: 100, failed_allocations: 0 };
    /// assert_eq!(run.ns_per_op(), 30.0);
    /// ```
    pub fn ns_per_op(&self) -> f64 {
        if self.ops == 0 {
            0.0
        } else {
            self.elapsed.as_nanos() as f64 / self.ops as f64
        }
    }
}

/// The memory timeline of a recorded replay: live bytes and bytes reserved from the upstream,
/// sampled at most a fixed number of times (each point holds the maxima over its stretch of
/// operations, so no peak is lost).
///
/// ```
/// let t = strata::replay::Timeline::default();
/// assert!(t.points.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The points, in operation order.
    pub points: Vec<TimelinePoint>,
}

/// One point of a [`Timeline`].
///
/// ```
/// let p = strata::replay::TimelinePoint { op: 10, live_bytes: 512, reserved_bytes: 1024 };
/// assert!(p.reserved_bytes >= p.live_bytes);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelinePoint {
    /// The number of operations done at the end of this point's stretch.
    pub op: usize,
    /// The most bytes live during the stretch.
    pub live_bytes: u64,
    /// The most bytes reserved from the upstream during the stretch.
    pub reserved_bytes: u64,
}

/// What [`Replayer::run_recorded`] saw.
///
/// ```
/// use strata::replay::{Plan, Replayer, SimDevice};
/// let plan = Plan::new(&Default::default());
/// let device = SimDevice::new(0);
/// let rec = Replayer::new(&plan, vec![strata::StreamKey::DEFAULT])?
///     .run_recorded(&device, &|| device.in_use(), 100)?;
/// assert_eq!(rec.peak_live_bytes, 0);
/// # Ok::<(), strata::replay::ReplayError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Allocations the resource refused.
    pub failed_allocations: u64,
    /// The most bytes live at once (refused allocations do not count).
    pub peak_live_bytes: u64,
    /// The most bytes reserved from the upstream at once, as the probe reported after each
    /// operation.
    pub peak_reserved_bytes: u64,
    /// The memory timeline.
    pub timeline: Timeline,
}

/// Runs a [`Plan`] against resources, keeping the address of every live allocation in a table
/// indexed by allocation id.
///
/// ```
/// use strata::replay::{Plan, Replayer, SimDevice};
/// use strata::trace::Trace;
/// let csv = "Thread,Time,Action,Pointer,Size,Stream\n1,t,allocate,0x1000,4096,0\n";
/// let plan = Plan::new(&Trace::parse(csv.as_bytes())?.resolve()?);
/// let device = SimDevice::new(2048);
/// let mut replayer = Replayer::new(&plan, plan.sim_stream_keys())?;
/// assert_eq!(replayer.run(&device)?.failed_allocations, 1);
/// device.set_capacity(4096);
/// assert!(replayer.fits(&device)?);
/// assert_eq!(device.in_use(), 0, "the leaked allocation was freed after the run");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Replayer<'p> {
    plan: &'p Plan,
    keys: Vec<StreamKey>,
    addrs: Vec<u64>,
}

impl<'p> Replayer<'p> {
    /// A replayer of `plan` that replays the trace's `i`-th stream on `keys[i]`.
    ///
    /// # Errors
    ///
    /// [`ReplayError::Streams`] when `keys` is shorter than the trace's list of streams.
    ///
    /// ```
    /// use strata::replay::{Plan, Replayer};
    /// assert!(Replayer::new(&Plan::new(&Default::default()), vec![]).is_ok());
    /// ```
    pub fn new(plan: &'p Plan, keys: Vec<StreamKey>) -> Result<Self, ReplayError> {
        if keys.len() < plan.streams.len() {
            return Err(ReplayError::Streams {
                needed: plan.streams.len(),
                given: keys.len(),
            });
        }
        Ok(Replayer {
            plan,
            keys,
            addrs: vec![NOT_LIVE; plan.sizes.len()],
        })
    }

    /// Replays the plan once, timing only the loop of allocate and free calls, then frees what
    /// is left live (untimed).
    ///
    /// # Errors
    ///
    /// [`ReplayError::Free`] when the resource refuses to free a block it handed out.
    ///
    /// ```
    /// use strata::replay::{Plan, Replayer, SimDevice};
    /// let plan = Plan::new(&Default::default());
    /// let run = Replayer::new(&plan, vec![])?.run(&SimDevice::new(1 << 20))?;
    /// assert_eq!(run.ops, 0);
    /// # Ok::<(), strata::replay::ReplayError>(())
    /// ```
    pub fn run<R: MemoryResource + ?Sized>(&mut self, resource: &R) -> Result<Run, ReplayError> {
        let keys = &self.keys[..];
        let addrs = &mut self.addrs[..];
        let mut failed = 0u64;
        let mut bad_free = None;
        let start = Instant::now();
        for (i, step) in self.plan.steps.iter().enumerate() {
            match *step {
                Step::Allocate { size, id, stream } => {
                    match resource.allocate(size, ALIGNMENT, keys[stream as usize]) {
                        Ok(addr) => addrs[id as usize] = addr,
                        Err(_) => failed += 1,
                    }
                }
                Step::Free { size, id, stream } => {
                    let addr = addrs[id as usize];
                    if addr != NOT_LIVE {
                        addrs[id as usize] = NOT_LIVE;
                        if let Err(error) =
                            resource.deallocate(addr, size, ALIGNMENT, keys[stream as usize])
                        {
                            bad_free = Some(ReplayError::Free { op: i, addr, error });
                            break;
                        }
                    }
                }
            }
        }
        let elapsed = start.elapsed();
        self.free_leftovers(resource)?;
        match bad_free {
            Some(e) => Err(e),
            None => Ok(Run {
                elapsed,
                ops: self.plan.steps.len(),
                failed_allocations: failed,
            }),
        }
    }

    /// Replays the plan once, untimed, recording live bytes and the bytes `reserved()` reports
    /// after every operation into a timeline of at most `points` points; then frees what is
    /// left live.
    ///
    /// # Errors
    ///
    /// [`ReplayError::Free`] when the resource refuses to free a block it handed out.
    ///
    /// ```
    /// use strata::replay::{Plan, Replayer, SimDevice};
    /// use strata::trace::Trace;
    /// let csv = "Thread,Time,Action,Pointer,Size,Stream\n\
    ///            1,t,allocate,0x1000,4096,0\n1,t,free,0x1000,4096,0\n";
    /// let plan = Plan::new(&Trace::parse(csv.as_bytes())?.resolve()?);
    /// let device = SimDevice::new(1 << 20);
    /// let rec = Replayer::new(&plan, plan.sim_stream_keys())?
    ///     .run_recorded(&device, &|| device.in_use(), 2)?;
    /// assert_eq!(rec.timeline.points.len(), 2);
    /// assert_eq!(rec.timeline.points[0].live_bytes, 4096);
    /// assert_eq!(rec.timeline.points[1].live_bytes, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_recorded<R: MemoryResource + ?Sized>(
        &mut self,
        resource: &R,
        reserved: &dyn Fn() -> u64,
        points: usize,
    ) -> Result<Recorded, ReplayError> {
        let n = self.plan.steps.len();
        let stretch = n.div_ceil(points.max(1)).max(1);
        let mut rec = Recorded {
            failed_allocations: 0,
            peak_live_bytes: 0,
            peak_reserved_bytes: 0,
            timeline: Timeline::default(),
        };
        let (mut live, mut stretch_live, mut stretch_reserved) = (0u64, 0u64, 0u64);
        let mut outcome = Ok(());
        for (i, step) in self.plan.steps.iter().enumerate() {
            match *step {
                Step::Allocate { size, id, stream } => {
                    match resource.allocate(size, ALIGNMENT, self.keys[stream as usize]) {
                        Ok(addr) => {
                            self.addrs[id as usize] = addr;
                            live += size;
                        }
                        Err(_) => rec.failed_allocations += 1,
                    }
                }
                Step::Free { size, id, stream } => {
                    let addr = self.addrs[id as usize];
                    if addr != NOT_LIVE {
                        self.addrs[id as usize] = NOT_LIVE;
                        live -= size;
                        if let Err(error) =
                            resource.deallocate(addr, size, ALIGNMENT, self.keys[stream as usize])
                        {
                            outcome = Err(ReplayError::Free { op: i, addr, error });
                            break;
                        }
                    }
                }
            }
            let r = reserved();
            stretch_live = stretch_live.max(live);
            stretch_reserved = stretch_reserved.max(r);
            if (i + 1) % stretch == 0 || i + 1 == n {
                rec.timeline.points.push(TimelinePoint {
                    op: i + 1,
                    live_bytes: stretch_live,
                    reserved_bytes: stretch_reserved,
                });
                rec.peak_live_bytes = rec.peak_live_bytes.max(stretch_live);
                rec.peak_reserved_bytes = rec.peak_reserved_bytes.max(stretch_reserved);
                (stretch_live, stretch_reserved) = (0, 0);
            }
        }
        self.free_leftovers(resource)?;
        outcome.map(|()| rec)
    }

    /// Whether the plan replays with no failed allocation; stops at the first failure. Frees
    /// what is left live either way.
    ///
    /// # Errors
    ///
    /// [`ReplayError::Free`] when the resource refuses to free a block it handed out.
    ///
    /// ```
    /// use strata::replay::{Plan, Replayer, SimDevice};
    /// let plan = Plan::new(&Default::default());
    /// assert!(Replayer::new(&plan, vec![])?.fits(&SimDevice::new(0))?);
    /// # Ok::<(), strata::replay::ReplayError>(())
    /// ```
    pub fn fits<R: MemoryResource + ?Sized>(&mut self, resource: &R) -> Result<bool, ReplayError> {
        let mut fits = true;
        let mut outcome = Ok(());
        for (i, step) in self.plan.steps.iter().enumerate() {
            match *step {
                Step::Allocate { size, id, stream } => {
                    match resource.allocate(size, ALIGNMENT, self.keys[stream as usize]) {
                        Ok(addr) => self.addrs[id as usize] = addr,
                        Err(_) => {
                            fits = false;
                            break;
                        }
                    }
                }
                Step::Free { size, id, stream } => {
                    let addr = self.addrs[id as usize];
                    if addr != NOT_LIVE {
                        self.addrs[id as usize] = NOT_LIVE;
                        if let Err(error) =
                            resource.deallocate(addr, size, ALIGNMENT, self.keys[stream as usize])
                        {
                            outcome = Err(ReplayError::Free { op: i, addr, error });
                            break;
                        }
                    }
                }
            }
        }
        self.free_leftovers(resource)?;
        outcome.map(|()| fits)
    }

    /// Frees every allocation still live, on the stream it was allocated on.
    fn free_leftovers<R: MemoryResource + ?Sized>(
        &mut self,
        resource: &R,
    ) -> Result<(), ReplayError> {
        let n = self.plan.steps.len();
        let mut first_error = None;
        for (id, addr) in self.addrs.iter_mut().enumerate() {
            if *addr == NOT_LIVE {
                continue;
            }
            let stream = self.keys[self.plan.alloc_stream[id] as usize];
            if let Err(error) = resource.deallocate(*addr, self.plan.sizes[id], ALIGNMENT, stream) {
                first_error.get_or_insert(ReplayError::Free {
                    op: n,
                    addr: *addr,
                    error,
                });
            }
            *addr = NOT_LIVE;
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The median, minimum and maximum of a set of samples.
///
/// ```
/// let s = strata::replay::Summary::of(&[3.0, 1.0, 2.0, 10.0]);
/// assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// The median (the mean of the two middle samples when their number is even).
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples` (all zero when there are none).
    ///
    /// ```
    /// assert_eq!(strata::replay::Summary::of(&[]).median, 0.0);
    /// ```
    pub fn of(samples: &[f64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Summary {
            median,
            min: s[0],
            max: s[n - 1],
        }
    }
}

/// How [`measure`] measures.
///
/// ```
/// let o = strata::replay::MeasureOptions::default();
/// assert_eq!((o.repeats, o.timeline_points), (5, 400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasureOptions {
    /// Timed runs after the warm-up (at least one is made).
    pub repeats: usize,
    /// The most points of the memory timeline.
    pub timeline_points: usize,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions {
            repeats: 5,
            timeline_points: 400,
        }
    }
}

/// What [`measure`] found for one resource.
///
/// ```
/// use strata::replay::{measure, MeasureOptions, Plan, SimDevice};
/// let plan = Plan::new(&Default::default());
/// let d = SimDevice::new(0);
/// let m = measure(&plan, &d, &[], &|| d.in_use(), &MeasureOptions::default(), &mut || {})?;
/// assert_eq!(m.ns_per_op.median, 0.0);
/// # Ok::<(), strata::replay::ReplayError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Nanoseconds per operation over the timed runs.
    pub ns_per_op: Summary,
    /// The most bytes live at once in the first run.
    pub peak_live_bytes: u64,
    /// The most bytes reserved from the upstream in the first run (the resource was fresh).
    pub peak_reserved_bytes: u64,
    /// Allocations refused in the first run.
    pub failed_allocations: u64,
    /// Allocations refused in the timed runs, in all.
    pub failed_in_timed_runs: u64,
    /// The memory timeline of the first run.
    pub timeline: Timeline,
}

/// Measures a resource on a plan: a recorded first run on the (fresh) resource, which is also
/// the warm-up, then `options.repeats` timed runs. `reserved` reports the bytes the resource
/// holds from its upstream; `tick` is called after every run, untimed (a progress bar ticks
/// there, and a GPU replay synchronises its streams there, so that every run starts with the
/// device idle).
///
/// # Errors
///
/// As [`Replayer::new`] and [`Replayer::run`].
///
/// ```
/// use strata::replay::{measure, MeasureOptions, RandomAllocations, Plan, SimDevice};
/// let plan = Plan::new(&RandomAllocations { count: 100, ..Default::default() }.generate().resolve()?);
/// let device = SimDevice::new(1 << 40);
/// let mut runs = 0;
/// let m = measure(&plan, &device, &plan.sim_stream_keys(), &|| device.in_use(),
///                 &MeasureOptions { repeats: 3, timeline_points: 10 }, &mut || runs += 1)?;
/// assert_eq!(runs, 4);
/// assert_eq!(m.peak_live_bytes, plan.peak_live_bytes());
/// assert!(m.timeline.points.len() <= 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn measure<R: MemoryResource + ?Sized>(
    plan: &Plan,
    resource: &R,
    keys: &[StreamKey],
    reserved: &dyn Fn() -> u64,
    options: &MeasureOptions,
    tick: &mut dyn FnMut(),
) -> Result<Measurement, ReplayError> {
    let mut replayer = Replayer::new(plan, keys.to_vec())?;
    let first = replayer.run_recorded(resource, reserved, options.timeline_points)?;
    tick();
    let mut samples = Vec::with_capacity(options.repeats.max(1));
    let mut failed_in_timed_runs = 0;
    for _ in 0..options.repeats.max(1) {
        let run = replayer.run(resource)?;
        failed_in_timed_runs += run.failed_allocations;
        samples.push(run.ns_per_op());
        tick();
    }
    Ok(Measurement {
        ns_per_op: Summary::of(&samples),
        peak_live_bytes: first.peak_live_bytes,
        peak_reserved_bytes: first.peak_reserved_bytes,
        failed_allocations: first.failed_allocations,
        failed_in_timed_runs,
        timeline: first.timeline,
    })
}

/// The largest capacity [`min_capacity`] tries, as a multiple of the plan's peak live bytes.
///
/// ```
/// assert_eq!(strata::replay::MAX_CAPACITY_RATIO, 4096);
/// ```
pub const MAX_CAPACITY_RATIO: u64 = 4096;

/// Searches the smallest capacity with which `build(capacity)` gives a resource that replays
/// the plan with no failed allocation: it starts at the plan's peak live bytes (no resource
/// can do with less), doubles until a replay fits, then bisects down to 1/1024 of the peak
/// live bytes (or 256 bytes). Every probe builds a fresh resource and stops at its first
/// failure; `build` returning an error counts as "does not fit". `tick` is called after every
/// probe.
///
/// Returns `None` when nothing up to [`MAX_CAPACITY_RATIO`] times the peak fits. The search
/// assumes that more capacity never hurts, which holds for every strata resource on the
/// simulated device.
///
/// # Errors
///
/// As [`Replayer::new`] and [`Replayer::fits`].
///
/// ```
/// use strata::replay::{min_capacity, Plan, RandomAllocations, SimDevice};
/// let plan = Plan::new(&RandomAllocations { count: 200, ..Default::default() }.generate().resolve()?);
/// // One device allocation per request: exactly the peak live bytes suffice.
/// let cap = min_capacity(&plan, &plan.sim_stream_keys(), |c| Ok(SimDevice::new(c)), &mut || {})?;
/// assert_eq!(cap, Some(plan.peak_live_bytes()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn min_capacity<R, F>(
    plan: &Plan,
    keys: &[StreamKey],
    mut build: F,
    tick: &mut dyn FnMut(),
) -> Result<Option<u64>, ReplayError>
where
    R: MemoryResource,
    F: FnMut(u64) -> Result<R, Error>,
{
    let mut replayer = Replayer::new(plan, keys.to_vec())?;
    let mut probe = |capacity: u64| -> Result<bool, ReplayError> {
        let fits = match build(capacity) {
            Ok(resource) => replayer.fits(&resource)?,
            Err(_) => false,
        };
        tick();
        Ok(fits)
    };
    let floor = plan.peak_live_bytes;
    if floor == 0 || probe(floor)? {
        return Ok(Some(floor));
    }
    let ceiling = floor.saturating_mul(MAX_CAPACITY_RATIO);
    let (mut lo, mut hi) = (floor, floor);
    loop {
        if hi >= ceiling {
            return Ok(None);
        }
        hi = hi.saturating_mul(2).min(ceiling);
        if probe(hi)? {
            break;
        }
        lo = hi;
    }
    let tolerance = (floor / 1024).max(256);
    while hi - lo > tolerance {
        let mid = lo + (hi - lo) / 2;
        if probe(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(hi))
}

/// The first address a [`SimDevice`] hands out.
const SIM_DEVICE_BASE: u64 = 1 << 40;

#[derive(Debug)]
struct SimState {
    capacity: u64,
    in_use: u64,
    peak_in_use: u64,
    next: u64,
    live: HashMap<u64, u64>,
}

/// A simulated device for replays: a byte capacity, no memory behind it.
///
/// Like `cuMemAlloc`, it limits the bytes in use, not the layout: every allocation gets fresh
/// addresses (aligned to at least 256 bytes) from a 2^64-byte window, so it never fails through
/// fragmentation, and its books grow on the heap, so it holds any number of live blocks (the
/// core's fixed-slot `SimUpstream` is bounded by its slots). Handles are cheap clones of one
/// device: give one to a pool as its [`Upstream`], keep one to read [`SimDevice::in_use`].
/// Used directly as a [`MemoryResource`], it is the simulated device's `cuda` resource: one
/// device allocation per request.
///
/// ```
/// use strata::replay::SimDevice;
/// use strata::{MemoryResource, StreamKey, Upstream};
/// let device = SimDevice::new(4096);
/// let mut upstream = device.clone();
/// let chunk = Upstream::allocate(&mut upstream, 2048, 256)?;
/// let block = device.allocate(1024, 256, StreamKey::DEFAULT)?;
/// assert_eq!(device.in_use(), 3072);
/// assert!(device.allocate(2048, 256, StreamKey::DEFAULT).is_err());
/// Upstream::deallocate(&mut upstream, chunk)?;
/// device.deallocate(block, 1024, 256, StreamKey::DEFAULT)?;
/// assert_eq!((device.in_use(), device.peak_in_use()), (0, 3072));
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SimDevice {
    state: Arc<Mutex<SimState>>,
}

impl SimDevice {
    /// A simulated device with `capacity` bytes.
    ///
    /// ```
    /// assert_eq!(strata::replay::SimDevice::new(1 << 30).capacity(), 1 << 30);
    /// ```
    pub fn new(capacity: u64) -> SimDevice {
        SimDevice {
            state: Arc::new(Mutex::new(SimState {
                capacity,
                in_use: 0,
                peak_in_use: 0,
                next: SIM_DEVICE_BASE,
                live: HashMap::new(),
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SimState> {
        // The state is consistent between statements, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The capacity in bytes.
    ///
    /// ```
    /// assert_eq!(strata::replay::SimDevice::new(7).capacity(), 7);
    /// ```
    pub fn capacity(&self) -> u64 {
        self.state().capacity
    }

    /// Changes the capacity; blocks already handed out stay valid even above it.
    ///
    /// ```
    /// let d = strata::replay::SimDevice::new(0);
    /// d.set_capacity(512);
    /// assert_eq!(d.capacity(), 512);
    /// ```
    pub fn set_capacity(&self, capacity: u64) {
        self.state().capacity = capacity;
    }

    /// Bytes handed out now.
    ///
    /// ```
    /// assert_eq!(strata::replay::SimDevice::new(1 << 20).in_use(), 0);
    /// ```
    pub fn in_use(&self) -> u64 {
        self.state().in_use
    }

    /// The most bytes handed out at once.
    ///
    /// ```
    /// assert_eq!(strata::replay::SimDevice::new(1 << 20).peak_in_use(), 0);
    /// ```
    pub fn peak_in_use(&self) -> u64 {
        self.state().peak_in_use
    }

    fn alloc(&self, size: u64, align: u64) -> Result<u64, Error> {
        if size == 0 {
            return Err(Error::ZeroSize);
        }
        strata_core::check_alignment(align)?;
        let mut s = self.state();
        let total_free = s.capacity.saturating_sub(s.in_use);
        if size > total_free {
            return Err(Error::OutOfMemory {
                requested: size,
                largest_free: total_free,
                total_free,
            });
        }
        let overflow = Error::SizeOverflow { requested: size };
        let start = align_up(s.next, align.max(ALIGNMENT)).ok_or(overflow)?;
        let end = start.checked_add(size).ok_or(overflow)?;
        s.next = end;
        s.live.insert(start, size);
        s.in_use += size;
        s.peak_in_use = s.peak_in_use.max(s.in_use);
        Ok(start)
    }

    fn free(&self, addr: u64, size: u64) -> Result<(), Error> {
        let mut s = self.state();
        match s.live.get(&addr) {
            None => Err(Error::NotAllocated { addr }),
            Some(&allocated) if allocated != size => Err(Error::SizeMismatch {
                addr,
                allocated,
                given: size,
            }),
            Some(_) => {
                s.live.remove(&addr);
                s.in_use -= size;
                Ok(())
            }
        }
    }
}

impl Upstream for SimDevice {
    fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        self.alloc(size, align).map(|start| Range::new(start, size))
    }

    fn deallocate(&mut self, range: Range) -> Result<(), Error> {
        self.free(range.start, range.len)
    }
}

impl MemoryResource for SimDevice {
    fn allocate(&self, size: u64, align: u64, _stream: StreamKey) -> Result<u64, Error> {
        self.alloc(size, align)
    }

    fn deallocate(
        &self,
        addr: u64,
        size: u64,
        _align: u64,
        _stream: StreamKey,
    ) -> Result<(), Error> {
        self.free(addr, size)
    }
}

/// Counts the bytes an upstream has handed out, for a replay's "reserved" figure.
///
/// ```
/// let m = strata::replay::Meter::default();
/// assert_eq!((m.current(), m.peak()), (0, 0));
/// ```
#[derive(Debug, Default)]
pub struct Meter {
    current: AtomicU64,
    peak: AtomicU64,
}

impl Meter {
    /// Bytes handed out now.
    ///
    /// ```
    /// assert_eq!(strata::replay::Meter::default().current(), 0);
    /// ```
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    /// The most bytes handed out at once.
    ///
    /// ```
    /// assert_eq!(strata::replay::Meter::default().peak(), 0);
    /// ```
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    fn add(&self, bytes: u64) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn sub(&self, bytes: u64) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// An upstream that counts what it hands out in a shared [`Meter`] (for device upstreams,
/// which do not count themselves), and may cap it: with a limit, a request that would take the
/// meter past it is refused with [`Error::OutOfMemory`] without calling the inner upstream
/// (the limit of `--capacity` on a GPU).
///
/// ```
/// use std::sync::Arc;
/// use strata::replay::{Metered, Meter, SimDevice};
/// use strata::{Error, Upstream};
/// let meter = Arc::new(Meter::default());
/// let mut up = Metered::new(SimDevice::new(1 << 20), meter.clone()).with_limit(8192);
/// let r = up.allocate(4096, 256)?;
/// assert_eq!(meter.current(), 4096);
/// assert!(matches!(up.allocate(8192, 256), Err(Error::OutOfMemory { total_free: 4096, .. })));
/// up.deallocate(r)?;
/// assert_eq!((meter.current(), meter.peak()), (0, 4096));
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Debug)]
pub struct Metered<U> {
    inner: U,
    meter: Arc<Meter>,
    limit: u64,
}

impl<U: Upstream> Metered<U> {
    /// Wraps `inner`, counting into `meter`, with no limit.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// let m = strata::replay::Metered::new(strata::replay::SimDevice::new(0), Arc::default());
    /// # let _ = m;
    /// ```
    pub fn new(inner: U, meter: Arc<Meter>) -> Self {
        Metered {
            inner,
            meter,
            limit: u64::MAX,
        }
    }

    /// The same upstream, refusing what would take the meter past `limit` bytes.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use strata::Upstream;
    /// let mut m = strata::replay::Metered::new(strata::replay::SimDevice::new(1 << 20), Arc::default())
    ///     .with_limit(0);
    /// assert!(m.allocate(256, 256).is_err());
    /// ```
    pub fn with_limit(self, limit: u64) -> Self {
        Metered { limit, ..self }
    }
}

impl<U: Upstream> Upstream for Metered<U> {
    fn allocate(&mut self, size: u64, align: u64) -> Result<Range, Error> {
        let room = self.limit.saturating_sub(self.meter.current());
        if size > room {
            return Err(Error::OutOfMemory {
                requested: size,
                largest_free: room,
                total_free: room,
            });
        }
        let r = self.inner.allocate(size, align)?;
        self.meter.add(r.len);
        Ok(r)
    }

    fn deallocate(&mut self, range: Range) -> Result<(), Error> {
        self.inner.deallocate(range)?;
        self.meter.sub(range.len);
        Ok(())
    }
}

/// The size distribution of [`RandomAllocations`].
///
/// ```
/// use strata::replay::SizeDistribution;
/// let d = SizeDistribution::LogUniform { min: 256, max: 1 << 28 };
/// assert_eq!(d.max(), 1 << 28);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeDistribution {
    /// Uniform on `1..=max` bytes, as RMM's random_allocations benchmark.
    Uniform {
        /// The largest size.
        max: u64,
    },
    /// Log-uniform on `min..=max` bytes: as many small as large orders of magnitude.
    LogUniform {
        /// The smallest size (at least 1).
        min: u64,
        /// The largest size.
        max: u64,
    },
}

impl SizeDistribution {
    /// The largest size drawn.
    ///
    /// ```
    /// assert_eq!(strata::replay::SizeDistribution::Uniform { max: 9 }.max(), 9);
    /// ```
    pub fn max(&self) -> u64 {
        match *self {
            SizeDistribution::Uniform { max } | SizeDistribution::LogUniform { max, .. } => max,
        }
    }

    fn draw(&self, rng: &mut SplitMix64) -> u64 {
        match *self {
            SizeDistribution::Uniform { max } => 1 + rng.below(max.max(1)),
            SizeDistribution::LogUniform { min, max } => {
                let (lo, hi) = ((min.max(1) as f64).ln(), (max.max(min).max(1) as f64).ln());
                let x = (lo + rng.unit() * (hi - lo)).exp() as u64;
                x.clamp(min.max(1), max.max(min).max(1))
            }
        }
    }
}

/// A small, fast, deterministic generator (SplitMix64).
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform on `0..n` (n > 0), without modulo bias worth caring about at 64 bits.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform on `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// RMM's random_allocations workload: at each step allocate with probability 0.73 (while under
/// the allocation count and the usage budget), else free a uniformly chosen live allocation;
/// at the end free everything. Allocations go to `streams` streams (values `0..streams`),
/// chosen uniformly; each is freed on its own stream.
///
/// ```
/// use strata::replay::{RandomAllocations, SizeDistribution};
/// let w = RandomAllocations { count: 1000, sizes: SizeDistribution::Uniform { max: 4096 },
///                             streams: 2, ..Default::default() };
/// let r = w.generate().resolve()?;
/// assert_eq!(r.sizes.len(), 1000);
/// assert_eq!(r.ops.len(), 2000);
/// assert_eq!(r.leaked, 0);
/// assert_eq!(r.streams.len(), 2);
/// assert_eq!(w.generate(), w.generate(), "deterministic for a seed");
/// # Ok::<(), strata::trace::TraceError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomAllocations {
    /// Allocations in all.
    pub count: u32,
    /// How sizes are drawn.
    pub sizes: SizeDistribution,
    /// No allocation is made that would take the live bytes to this or beyond, except when
    /// nothing is live (so the workload always makes progress).
    pub max_usage: u64,
    /// The generator's seed.
    pub seed: u64,
    /// Streams to spread the allocations over (at least 1).
    pub streams: u32,
}

impl Default for RandomAllocations {
    /// 10 000 allocations uniform up to 1 MiB, 16 000 MiB budget (RMM's), seed 42, 1 stream.
    fn default() -> Self {
        RandomAllocations {
            count: 10_000,
            sizes: SizeDistribution::Uniform { max: 1 << 20 },
            max_usage: 16_000 << 20,
            seed: 42,
            streams: 1,
        }
    }
}

impl RandomAllocations {
    /// The first fake pointer of a generated trace; each allocation gets the next MiB.
    const FIRST_POINTER: u64 = 0x7f00_0000_0000;

    /// Generates the workload as a trace (thread 0, fake unique pointers, stream values
    /// `0..streams`; line numbers as if written with a header).
    ///
    /// ```
    /// let t = strata::replay::RandomAllocations { count: 3, ..Default::default() }.generate();
    /// assert_eq!(t.events.len(), 6);
    /// assert_eq!(t.events[0].line, 2);
    /// ```
    pub fn generate(&self) -> Trace {
        let mut rng = SplitMix64(self.seed);
        let streams = u64::from(self.streams.max(1));
        let mut live: Vec<(u64, u64, u64)> = Vec::new();
        let (mut used, mut count, mut pointer) = (0u64, 0u32, Self::FIRST_POINTER);
        let mut events = Vec::with_capacity(2 * self.count as usize);
        let mut push = |action, pointer, size, stream| {
            events.push(Event {
                line: events.len() + 2,
                thread: 0,
                action,
                pointer,
                size,
                stream,
            })
        };
        while count < self.count || !live.is_empty() {
            let size = self.sizes.draw(&mut rng);
            let allocate = count < self.count
                && (live.is_empty()
                    || (rng.below(100) < 73 && used.saturating_add(size) < self.max_usage));
            if allocate {
                pointer += 1 << 20;
                let stream = rng.below(streams);
                live.push((pointer, size, stream));
                used += size;
                count += 1;
                push(Action::Allocate, pointer, size, stream);
            } else {
                let i = rng.below(live.len() as u64) as usize;
                let (p, s, stream) = live.swap_remove(i);
                used -= s;
                push(Action::Free, p, s, stream);
            }
        }
        Trace { events }
    }
}

/// The device a report was made on.
///
/// ```
/// let d = strata::replay::DeviceReport { kind: "sim".into(), name: "simulated device".into(), note: String::new() };
/// assert_eq!(d.kind, "sim");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct DeviceReport {
    /// `"sim"` (the simulated device) or `"cuda"` (a GPU).
    pub kind: String,
    /// The device's name (the GPU's, or `"simulated device"`).
    pub name: String,
    /// Why this device was used (`--device sim`, or why `--device auto` found no GPU), or, on a
    /// GPU, its driver version and memory.
    pub note: String,
}

/// The trace a report replayed.
///
/// ```
/// let t = strata::replay::TraceReport::new("bench", &strata::replay::Plan::new(&Default::default()));
/// assert_eq!(t.ops, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct TraceReport {
    /// The trace's path, or a description of the generated workload.
    pub source: String,
    /// Operations replayed (allocations and frees).
    pub ops: usize,
    /// Allocations replayed.
    pub allocations: usize,
    /// Frees replayed.
    pub frees: usize,
    /// Distinct streams.
    pub streams: usize,
    /// The most bytes the trace holds live at once.
    pub peak_live_bytes: u64,
    /// `allocate failure` lines in the trace (skipped).
    pub logged_failures: u64,
    /// Allocations the trace never frees.
    pub leaked: u64,
}

impl TraceReport {
    /// Summarises a plan.
    ///
    /// ```
    /// let p = strata::replay::Plan::new(&Default::default());
    /// assert_eq!(strata::replay::TraceReport::new("x", &p).source, "x");
    /// ```
    pub fn new(source: impl Into<String>, plan: &Plan) -> TraceReport {
        TraceReport {
            source: source.into(),
            ops: plan.ops(),
            allocations: plan.allocations(),
            frees: plan.frees(),
            streams: plan.streams().len(),
            peak_live_bytes: plan.peak_live_bytes(),
            logged_failures: plan.logged_failures(),
            leaked: plan.leaked(),
        }
    }
}

/// One resource's line of a report.
///
/// ```
/// let r = strata::replay::ResourceReport::failed("async", "needs a GPU");
/// assert_eq!(r.error.as_deref(), Some("needs a GPU"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct ResourceReport {
    /// The resource's name as given to `--resource` (`pool`, `arena`, …).
    pub name: String,
    /// Host nanoseconds per allocate or free call: the median of the timed runs.
    pub ns_per_op_median: f64,
    /// The fastest timed run, in nanoseconds per operation.
    pub ns_per_op_min: f64,
    /// The slowest timed run, in nanoseconds per operation.
    pub ns_per_op_max: f64,
    /// The most bytes live at once in the first run (refused allocations do not count).
    pub peak_live_bytes: u64,
    /// The most bytes the resource held from its upstream (the device) at once, in the first
    /// run on the fresh resource.
    pub peak_reserved_bytes: u64,
    /// The smallest device capacity with which the resource replays the trace with no
    /// failure, found on the simulated device; `null` when not searched (the resource has no
    /// simulated model, or `--no-search` was given) or when nothing up to
    /// [`MAX_CAPACITY_RATIO`] times the peak live bytes fits.
    pub min_capacity_bytes: Option<u64>,
    /// `min_capacity_bytes` divided by the trace's peak live bytes.
    pub min_capacity_ratio: Option<f64>,
    /// Allocations the resource refused in the first run.
    pub failed_allocations: u64,
    /// Why the resource could not be measured (then every number above is 0), or `null`.
    pub error: Option<String>,
    /// The memory timeline of the first run (not part of the JSON; drawn by `--plot`).
    #[cfg_attr(feature = "cli", serde(skip))]
    pub timeline: Timeline,
}

impl ResourceReport {
    /// A line for a resource that could not be measured.
    ///
    /// ```
    /// let r = strata::replay::ResourceReport::failed("managed", "no GPU");
    /// assert_eq!(r.ns_per_op_median, 0.0);
    /// ```
    pub fn failed(name: impl Into<String>, error: impl Into<String>) -> ResourceReport {
        ResourceReport {
            name: name.into(),
            ns_per_op_median: 0.0,
            ns_per_op_min: 0.0,
            ns_per_op_max: 0.0,
            peak_live_bytes: 0,
            peak_reserved_bytes: 0,
            min_capacity_bytes: None,
            min_capacity_ratio: None,
            failed_allocations: 0,
            error: Some(error.into()),
            timeline: Timeline::default(),
        }
    }

    /// A line from a measurement and an optional capacity found by [`min_capacity`].
    ///
    /// ```
    /// use strata::replay::{measure, MeasureOptions, Plan, ResourceReport, SimDevice};
    /// let plan = Plan::new(&Default::default());
    /// let d = SimDevice::new(0);
    /// let m = measure(&plan, &d, &[], &|| d.in_use(), &MeasureOptions::default(), &mut || {})?;
    /// let r = ResourceReport::measured("cuda", &m, None, plan.peak_live_bytes());
    /// assert!(r.error.is_none());
    /// # Ok::<(), strata::replay::ReplayError>(())
    /// ```
    pub fn measured(
        name: impl Into<String>,
        m: &Measurement,
        min_capacity: Option<u64>,
        trace_peak_live: u64,
    ) -> ResourceReport {
        ResourceReport {
            name: name.into(),
            ns_per_op_median: m.ns_per_op.median,
            ns_per_op_min: m.ns_per_op.min,
            ns_per_op_max: m.ns_per_op.max,
            peak_live_bytes: m.peak_live_bytes,
            peak_reserved_bytes: m.peak_reserved_bytes,
            min_capacity_bytes: min_capacity,
            min_capacity_ratio: min_capacity
                .filter(|_| trace_peak_live > 0)
                .map(|c| c as f64 / trace_peak_live as f64),
            failed_allocations: m.failed_allocations,
            error: None,
            timeline: m.timeline.clone(),
        }
    }
}

/// The whole report of `strata replay` or `strata bench` (the JSON output).
///
/// ```
/// use strata::replay::{DeviceReport, Plan, Report, TraceReport};
/// let r = Report {
///     schema: Report::SCHEMA,
///     device: DeviceReport { kind: "sim".into(), name: "simulated device".into(), note: String::new() },
///     trace: TraceReport::new("x", &Plan::new(&Default::default())),
///     capacity_bytes: 1 << 30,
///     repeats: 5,
///     resources: vec![],
/// };
/// assert_eq!(r.schema, "strata-replay/1");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "cli", derive(serde::Serialize))]
pub struct Report {
    /// The schema's name and version: `"strata-replay/1"`.
    pub schema: &'static str,
    /// The device replayed on.
    pub device: DeviceReport,
    /// The trace replayed.
    pub trace: TraceReport,
    /// The device capacity the timed replays had (on a GPU: the most the pools may take).
    pub capacity_bytes: u64,
    /// Timed runs per resource (after one warm-up run).
    pub repeats: usize,
    /// One entry per resource, in the order asked for.
    pub resources: Vec<ResourceReport>,
}

impl Report {
    /// The value of [`Report::schema`].
    pub const SCHEMA: &'static str = "strata-replay/1";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource that refuses every allocation larger than a limit and checks every free.
    struct Picky {
        device: SimDevice,
        limit: u64,
    }

    impl MemoryResource for Picky {
        fn allocate(&self, size: u64, align: u64, s: StreamKey) -> Result<u64, Error> {
            if size > self.limit {
                return Err(Error::TooLarge {
                    requested: size,
                    max: self.limit,
                });
            }
            MemoryResource::allocate(&self.device, size, align, s)
        }
        fn deallocate(&self, addr: u64, size: u64, align: u64, s: StreamKey) -> Result<(), Error> {
            MemoryResource::deallocate(&self.device, addr, size, align, s)
        }
    }

    fn plan_of(csv: &str) -> Plan {
        let text = format!("{}\n{csv}", crate::trace::HEADER);
        Plan::new(&Trace::parse(text.as_bytes()).unwrap().resolve().unwrap())
    }

    #[test]
    fn refused_allocations_are_counted_and_their_frees_skipped() {
        let plan = plan_of(
            "1,t,allocate,0x100,100,0\n\
             1,t,allocate,0x200,5000,0\n\
             1,t,free,0x200,5000,0\n\
             1,t,free,0x100,100,0\n",
        );
        let device = SimDevice::new(1 << 20);
        let picky = Picky {
            device: device.clone(),
            limit: 4096,
        };
        let mut r = Replayer::new(&plan, plan.sim_stream_keys()).unwrap();
        let run = r.run(&picky).unwrap();
        assert_eq!((run.ops, run.failed_allocations), (4, 1));
        assert_eq!(device.in_use(), 0);
        let rec = r.run_recorded(&picky, &|| device.in_use(), 10).unwrap();
        assert_eq!(rec.failed_allocations, 1);
        assert_eq!(rec.peak_live_bytes, 100);
        assert!(!r.fits(&picky).unwrap());
        assert_eq!(device.in_use(), 0);
    }

    #[test]
    fn a_resource_that_loses_blocks_is_reported() {
        struct Forgetful(SimDevice);
        impl MemoryResource for Forgetful {
            fn allocate(&self, size: u64, align: u64, s: StreamKey) -> Result<u64, Error> {
                MemoryResource::allocate(&self.0, size, align, s)
            }
            fn deallocate(&self, addr: u64, _: u64, _: u64, _: StreamKey) -> Result<(), Error> {
                Err(Error::NotAllocated { addr })
            }
        }
        let plan = plan_of("1,t,allocate,0x100,100,0\n1,t,free,0x100,100,0\n");
        let mut r = Replayer::new(&plan, plan.sim_stream_keys()).unwrap();
        match r.run(&Forgetful(SimDevice::new(1 << 20))) {
            Err(ReplayError::Free { op: 1, .. }) => {}
            other => panic!("expected a free error at op 1, got {other:?}"),
        }
    }

    #[test]
    fn streams_map_to_keys_in_order_of_appearance() {
        struct Recorder(Mutex<Vec<StreamKey>>, SimDevice);
        impl MemoryResource for Recorder {
            fn allocate(&self, size: u64, align: u64, s: StreamKey) -> Result<u64, Error> {
                self.0.lock().unwrap().push(s);
                MemoryResource::allocate(&self.1, size, align, s)
            }
            fn deallocate(&self, a: u64, size: u64, al: u64, s: StreamKey) -> Result<(), Error> {
                self.0.lock().unwrap().push(s);
                MemoryResource::deallocate(&self.1, a, size, al, s)
            }
        }
        let plan = plan_of(
            "1,t,allocate,0x100,100,abc\n\
             1,t,allocate,0x200,100,0\n\
             1,t,free,0x100,100,0\n",
        );
        assert_eq!(plan.sim_stream_keys(), vec![StreamKey(0xabc), StreamKey(0)]);
        let rec = Recorder(Mutex::default(), SimDevice::new(1 << 20));
        let keys = vec![StreamKey(10), StreamKey(20)];
        Replayer::new(&plan, keys).unwrap().run(&rec).unwrap();
        // The leaked allocation (0x200, on stream 0) is freed on its own stream afterwards.
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec![StreamKey(10), StreamKey(20), StreamKey(20), StreamKey(20)]
        );
        assert!(matches!(
            Replayer::new(&plan, vec![StreamKey(1)]),
            Err(ReplayError::Streams {
                needed: 2,
                given: 1
            })
        ));
    }

    #[test]
    fn capacity_search_finds_the_threshold_of_a_lossy_resource() {
        // A resource that wastes exactly half: each block costs twice its size on the device.
        struct Doubling(SimDevice);
        impl MemoryResource for Doubling {
            fn allocate(&self, size: u64, align: u64, s: StreamKey) -> Result<u64, Error> {
                MemoryResource::allocate(&self.0, 2 * size, align, s)
            }
            fn deallocate(&self, a: u64, size: u64, al: u64, s: StreamKey) -> Result<(), Error> {
                MemoryResource::deallocate(&self.0, a, 2 * size, al, s)
            }
        }
        let w = RandomAllocations {
            count: 500,
            ..Default::default()
        };
        let plan = Plan::new(&w.generate().resolve().unwrap());
        let mut probes = 0;
        let cap = min_capacity(
            &plan,
            &plan.sim_stream_keys(),
            |c| Ok(Doubling(SimDevice::new(c))),
            &mut || probes += 1,
        )
        .unwrap()
        .unwrap();
        let peak = plan.peak_live_bytes();
        assert!(
            cap >= 2 * peak && cap - 2 * peak <= (peak / 1024).max(256),
            "{cap} vs {peak}"
        );
        assert!(probes > 2);
        // A resource that can never serve the largest request finds no capacity.
        let none = min_capacity(
            &plan,
            &plan.sim_stream_keys(),
            |c| {
                Ok(Picky {
                    device: SimDevice::new(c),
                    limit: 1,
                })
            },
            &mut || {},
        )
        .unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn random_allocations_follow_rmm_shape() {
        let w = RandomAllocations {
            count: 5000,
            sizes: SizeDistribution::LogUniform {
                min: 256,
                max: 1 << 28,
            },
            max_usage: 1 << 34,
            seed: 7,
            streams: 4,
        };
        let r = w.generate().resolve().unwrap();
        assert_eq!(r.sizes.len(), 5000);
        assert!(r.sizes.iter().all(|&s| (256..=1 << 28).contains(&s)));
        assert_eq!(r.streams.len(), 4);
        // Log-uniform: about as many sizes below 64 KiB (the geometric middle) as above.
        let small = r.sizes.iter().filter(|&&s| s < 1 << 16).count();
        assert!((2000..3000).contains(&small), "{small}");
        let other = RandomAllocations { seed: 8, ..w };
        assert_ne!(w.generate(), other.generate());
        // A budget below the smallest size still lets allocation go on when nothing is live.
        let tight = RandomAllocations {
            count: 10,
            max_usage: 1,
            ..Default::default()
        };
        assert!(tight.generate().resolve().unwrap().peak_live_bytes > 0);
    }

    #[test]
    fn summary_takes_the_middle() {
        let s = Summary::of(&[5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
    }

    #[test]
    fn sim_device_checks_frees() {
        let d = SimDevice::new(1 << 20);
        let a = MemoryResource::allocate(&d, 1000, 4096, StreamKey::DEFAULT).unwrap();
        assert_eq!(a % 4096, 0);
        assert_eq!(
            MemoryResource::deallocate(&d, a, 999, 256, StreamKey::DEFAULT),
            Err(Error::SizeMismatch {
                addr: a,
                allocated: 1000,
                given: 999
            })
        );
        assert_eq!(
            MemoryResource::deallocate(&d, a + 1, 1000, 256, StreamKey::DEFAULT),
            Err(Error::NotAllocated { addr: a + 1 })
        );
        MemoryResource::deallocate(&d, a, 1000, 256, StreamKey::DEFAULT).unwrap();
        assert_eq!(
            MemoryResource::allocate(&d, 0, 256, StreamKey::DEFAULT),
            Err(Error::ZeroSize)
        );
    }
}
