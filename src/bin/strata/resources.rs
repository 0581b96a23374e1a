//! The resources `--resource` names, built on the simulated device and measured.

use strata::adaptors::AsUpstream;
use strata::algo::{self, ArenaConfig, CoalescingList, Fit, FixedConfig, Heap, PoolConfig};
use strata::replay::{MeasureOptions, Plan, ResourceReport, SimDevice, measure, min_capacity};
use strata::resources::{
    Arena, Binning, DEFAULT_ARENA_STREAMS, DEFAULT_POOL_STREAMS, FixedSize, NoOrdering, Pool,
    StreamOrderedPool,
};
use strata::{Error, MemoryResource, Upstream};

use crate::Failure;
use crate::output::Progress;
use crate::units::Human;

/// A resource `--resource` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// strata's coalescing pool (RMM's `pool_memory_resource`).
    Pool,
    /// strata's coalescing pool picking blocks by bounded best fit (`Fit::Best`): less memory,
    /// more time per operation.
    PoolBest,
    /// strata's arena (RMM's `arena_memory_resource`).
    Arena,
    /// strata's binning resource: fixed-size bins over a pool (RMM's `binning_memory_resource`).
    Binning,
    /// strata's fixed-size resource (RMM's `fixed_size_memory_resource`).
    Fixed,
    /// strata's stream-ordered pool (per-stream free lists, events only on steals).
    StreamPool,
    /// The driver's stream-ordered allocator on a private pool (`cuMemAllocAsync`).
    Async,
    /// One device allocation per request (`cuMemAlloc`; the simulated device itself on sim).
    Cuda,
    /// Managed memory (`cuMemAllocManaged`).
    Managed,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Pool,
        Kind::PoolBest,
        Kind::StreamPool,
        Kind::Arena,
        Kind::Binning,
        Kind::Fixed,
        Kind::Async,
        Kind::Cuda,
        Kind::Managed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Pool => "pool",
            Kind::PoolBest => "pool-best",
            Kind::Arena => "arena",
            Kind::Binning => "binning",
            Kind::Fixed => "fixed",
            Kind::StreamPool => "stream-pool",
            Kind::Async => "async",
            Kind::Cuda => "cuda",
            Kind::Managed => "managed",
        }
    }
}

/// Parses `--resource`: a comma-separated list of names; `all` stands for `available`.
pub fn parse_list(list: &str, available: &[Kind]) -> Result<Vec<Kind>, Failure> {
    let mut kinds = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name.eq_ignore_ascii_case("all") {
            for &k in available {
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
            continue;
        }
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                Failure(format!(
                    "unknown resource `{name}`; known: {}, all",
                    names.join(", ")
                ))
            })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        return Err(Failure("--resource names no resource".into()));
    }
    Ok(kinds)
}

/// What every measurement needs.
pub struct Context<'a> {
    pub plan: &'a Plan,
    /// The device capacity of the timed replays.
    pub capacity: u64,
    pub repeats: u32,
    /// Whether to search the smallest capacity with no failure.
    pub search: bool,
    pub progress: &'a Progress,
}

impl Context<'_> {
    pub fn options(&self) -> MeasureOptions {
        MeasureOptions {
            repeats: self.repeats as usize,
            timeline_points: 400,
        }
    }
}

/// Something done with a resource's simulated model, whatever its type.
pub trait WithModel {
    type Out;
    /// `build` makes the resource over a simulated device.
    fn with<R, F>(self, build: F) -> Self::Out
    where
        R: MemoryResource,
        F: Fn(SimDevice) -> Result<R, Error>;
}

/// The size of the chunks the fixed-size resource takes from its upstream, about: RMM's
/// default (1 MiB blocks, 128 per chunk).
const FIXED_CHUNK_BYTES: u64 = 128 << 20;

/// The bins of the binning resource: 1 KiB ..= 4 MiB, as in RMM's replay benchmark, over a
/// pool that also serves the larger requests.
pub const BIN_EXPONENTS: (u32, u32) = (10, 22);

/// The fixed-size resource's configuration for a plan: blocks of its largest request, so that
/// every request fits, and chunks of about [`FIXED_CHUNK_BYTES`].
pub fn fixed_config(plan: &Plan) -> Result<FixedConfig, Error> {
    let block = plan.largest_allocation().max(1);
    let per_chunk = (FIXED_CHUNK_BYTES / block).clamp(1, 128) as u32;
    FixedConfig::new(block, per_chunk)
}

/// Lines saying how the resources among `kinds` that have parameters are set up.
pub fn notes(kinds: &[Kind], plan: &Plan) -> Vec<String> {
    let mut notes = Vec::new();
    if kinds.contains(&Kind::Binning) {
        notes.push(format!(
            "binning: bins of {} .. {} over a pool, which also serves larger requests",
            Human(1 << BIN_EXPONENTS.0),
            Human(1 << BIN_EXPONENTS.1)
        ));
    }
    if kinds.contains(&Kind::Fixed)
        && let Ok(config) = fixed_config(plan)
    {
        notes.push(format!(
            "fixed: one block size, the trace's largest request rounded to 256 B ({}), {} blocks per chunk; it wastes what smaller requests leave",
            Human(config.block_size()),
            config.blocks_per_chunk()
        ));
    }
    notes
}

/// Calls `f` with the simulated model of `kind` (how it is built over a simulated device of
/// some capacity), or returns `None` when it has none (the driver's own allocators). On the
/// simulated device the pools start empty and grow on demand (the device refuses growth past
/// its capacity), and the arena takes the whole capacity, as RMM's does.
pub fn with_model<W: WithModel>(kind: Kind, plan: &Plan, f: W) -> Option<W::Out> {
    match kind {
        Kind::Cuda => Some(f.with(Ok)),
        Kind::Pool => Some(f.with(|d| Pool::new(d, PoolConfig::new(0)))),
        Kind::PoolBest => Some(f.with(|d| best_fit_pool(d, PoolConfig::new(0)))),
        Kind::StreamPool => {
            let streams = plan.streams().len().max(DEFAULT_POOL_STREAMS);
            Some(f.with(move |d| {
                StreamOrderedPool::<_, _>::with_streams(d, NoOrdering, PoolConfig::new(0), streams)
            }))
        }
        Kind::Arena => {
            let streams = plan.streams().len().max(DEFAULT_ARENA_STREAMS);
            Some(f.with(move |d: SimDevice| {
                let size = d.capacity();
                Arena::<_, _>::with_streams(d, NoOrdering, ArenaConfig::new(size), streams)
            }))
        }
        Kind::Binning => Some(f.with(|d| {
            let pool = Pool::new(d, PoolConfig::new(0))?;
            Binning::<_, Heap>::with_exponents(
                AsUpstream::new(pool),
                BIN_EXPONENTS.0,
                BIN_EXPONENTS.1,
            )
        })),
        Kind::Fixed => {
            let config = fixed_config(plan);
            Some(f.with(move |d| Ok(FixedSize::<_, Heap>::new(d, config?))))
        }
        Kind::Async | Kind::Managed => None,
    }
}

/// strata's pool over `upstream` with its list picking blocks by [`Fit::Best`].
///
/// # Errors
///
/// As [`algo::Pool::with_list`].
pub fn best_fit_pool<U: Upstream>(upstream: U, config: PoolConfig) -> Result<Pool<U>, Error> {
    let list = CoalescingList::new().with_fit(Fit::Best);
    algo::Pool::with_list(upstream, list, config).map(Pool::from_algo)
}

/// Whether `kind` has a simulated model.
pub fn has_model(kind: Kind) -> bool {
    struct Probe;
    impl WithModel for Probe {
        type Out = ();
        fn with<R, F>(self, _build: F)
        where
            R: MemoryResource,
            F: Fn(SimDevice) -> Result<R, Error>,
        {
        }
    }
    with_model(kind, &Plan::new(&Default::default()), Probe).is_some()
}

/// Searches the smallest capacity of `kind`'s model with no failure.
struct Search<'a, 'c>(&'a Context<'c>);

impl WithModel for Search<'_, '_> {
    type Out = Result<Option<u64>, Failure>;
    fn with<R, F>(self, build: F) -> Self::Out
    where
        R: MemoryResource,
        F: Fn(SimDevice) -> Result<R, Error>,
    {
        let ctx = self.0;
        let keys = ctx.plan.sim_stream_keys();
        min_capacity(ctx.plan, &keys, |c| build(SimDevice::new(c)), &mut || {
            ctx.progress.tick_extra()
        })
        .map_err(Failure::from)
    }
}

/// The smallest capacity for `kind` on the simulated device, when searched and modelled.
pub fn search_capacity(kind: Kind, ctx: &Context<'_>) -> Result<Option<u64>, Failure> {
    if !ctx.search {
        return Ok(None);
    }
    with_model(kind, ctx.plan, Search(ctx)).unwrap_or(Ok(None))
}

/// Measures `kind` on the simulated device.
struct MeasureSim<'a, 'c>(&'a Context<'c>, Kind);

impl WithModel for MeasureSim<'_, '_> {
    type Out = Result<ResourceReport, Failure>;
    fn with<R, F>(self, build: F) -> Self::Out
    where
        R: MemoryResource,
        F: Fn(SimDevice) -> Result<R, Error>,
    {
        let (ctx, kind) = (self.0, self.1);
        let device = SimDevice::new(ctx.capacity);
        let resource = match build(device.clone()) {
            Ok(r) => r,
            Err(e) => {
                return Ok(ResourceReport::failed(
                    kind.name(),
                    format!("cannot be built with capacity {}: {e}", ctx.capacity),
                ));
            }
        };
        let keys = ctx.plan.sim_stream_keys();
        let m = measure(
            ctx.plan,
            &resource,
            &keys,
            &|| device.in_use(),
            &ctx.options(),
            &mut || ctx.progress.tick(),
        )
        .map_err(|e| Failure(format!("{}: {e}", kind.name())))?;
        drop(resource);
        let min = search_capacity(kind, ctx)?;
        Ok(ResourceReport::measured(
            kind.name(),
            &m,
            min,
            ctx.plan.peak_live_bytes(),
        ))
    }
}

/// Measures `kind` on the simulated device (a line saying why for a resource that needs a GPU).
pub fn measure_sim(kind: Kind, ctx: &Context<'_>) -> Result<ResourceReport, Failure> {
    match with_model(kind, ctx.plan, MeasureSim(ctx, kind)) {
        Some(report) => report,
        None => {
            for _ in 0..=ctx.repeats {
                ctx.progress.tick();
            }
            Ok(ResourceReport::failed(
                kind.name(),
                "needs a GPU: the driver's allocator has no simulated model (use --device cuda)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_all_and_duplicates() {
        let all = &Kind::ALL;
        assert_eq!(parse_list("pool", all).unwrap(), vec![Kind::Pool]);
        assert_eq!(
            parse_list("cuda, Pool,cuda", all).unwrap(),
            vec![Kind::Cuda, Kind::Pool]
        );
        assert_eq!(parse_list("all", all).unwrap().len(), Kind::ALL.len());
        assert_eq!(
            parse_list("async,all", &[Kind::Cuda]).unwrap(),
            vec![Kind::Async, Kind::Cuda]
        );
        let err = parse_list("pool,bogus", all).unwrap_err().0;
        assert!(err.contains("unknown resource `bogus`"), "{err}");
        assert!(parse_list(",", all).is_err());
    }
}
