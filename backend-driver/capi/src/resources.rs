//! What a handle stands for ([`Entry`]: a type-erased resource, its device, the adaptors to
//! read from), the options the C callers pass, and the constructors behind the
//! `strata_*_create` functions.

use std::ffi::{CStr, c_char};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use strata::logging::CsvLog;
use strata_core::adaptors::{AsUpstream, Limiting, Logging, Statistics, ThreadSafe};
use strata_core::algo::{ArenaConfig, Heap, PoolConfig};
use strata_core::resources::{
    Arena, Binning, DEFAULT_ARENA_STREAMS, DEFAULT_POOL_STREAMS, NoOrdering, Pool, Reuse,
    StreamOrderedPool,
};
use strata_core::{MemoryResource, SimUpstream};
use strata_driver::{Async, AsyncOptions, Device, DeviceMemory, EventOrder, notify_on_stream_drop};

use crate::error::Failure;

/// A resource as the registry keeps it.
pub(crate) struct Entry {
    /// The top of the stack: what `strata_allocate` calls.
    pub(crate) mr: Arc<dyn MemoryResource>,
    /// The CUDA device, or `None` for the simulated device.
    pub(crate) device: Option<Device>,
    /// What it is, for messages.
    pub(crate) kind: &'static str,
    /// The nearest statistics adaptor at or above the resource (adaptors pass it up).
    pub(crate) stats: Option<Arc<Statistics<Arc<dyn MemoryResource>>>>,
    /// The nearest logging adaptor's log.
    pub(crate) log: Option<Arc<CsvLog<BufWriter<File>>>>,
    /// The driver pool of an async resource, to read what it reserves.
    pub(crate) async_pool: Option<Arc<Async>>,
    /// Set for the per-device default resources, which live as long as the process.
    pub(crate) pinned: bool,
}

impl Entry {
    fn base(mr: Arc<dyn MemoryResource>, device: Option<Device>, kind: &'static str) -> Entry {
        Entry {
            mr,
            device,
            kind,
            stats: None,
            log: None,
            async_pool: None,
            pinned: false,
        }
    }

    /// An adaptor over `self`: same device, statistics and log visible through it.
    fn adaptor(&self, mr: Arc<dyn MemoryResource>, kind: &'static str) -> Entry {
        Entry {
            mr,
            device: self.device.clone(),
            kind,
            stats: self.stats.clone(),
            log: self.log.clone(),
            async_pool: self.async_pool.clone(),
            pinned: false,
        }
    }

    /// A resource that takes its memory from `self` (statistics and log of `self` count the
    /// upstream traffic, not this resource's, so they are not passed up).
    fn over(&self, mr: Arc<dyn MemoryResource>, kind: &'static str) -> Entry {
        Entry::base(mr, self.device.clone(), kind)
    }

    /// `self` as the upstream of an algorithm: calls on the default stream.
    fn upstream(&self) -> AsUpstream<Arc<dyn MemoryResource>> {
        AsUpstream::new(Arc::clone(&self.mr))
    }
}

/// Options of `strata_pool_create` and `strata_stream_pool_create`. Zero-initialised, it is
/// the default: an empty pool that grows on demand, with no maximum.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrataPoolOptions {
    /// Bytes taken from the upstream when the pool is created (0: none until the first
    /// request). The pool grows past it on demand: by the pool's size (doubling it), or by
    /// half the room left under the maximum.
    pub initial_size: u64,
    /// The most bytes the pool may hold from its upstream (0: no maximum).
    pub maximum_size: u64,
    /// Stream-ordered pool only: at most this many streams at once (0: 64).
    pub max_streams: u32,
    /// Stream-ordered pool only: nonzero grows a stream's own heap before taking blocks freed
    /// on other streams (0: RMM's order, take other streams' blocks first: less memory).
    pub grow_first: u32,
}

impl StrataPoolOptions {
    fn config(&self) -> PoolConfig {
        let c = PoolConfig::new(self.initial_size);
        if self.maximum_size == 0 {
            c
        } else {
            c.with_maximum(self.maximum_size)
        }
    }
}

/// Options of `strata_arena_create`. `arena_size` is required; zero elsewhere is the default.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrataArenaOptions {
    /// The arena's total size: one upstream allocation at creation; the arena never grows.
    pub arena_size: u64,
    /// Superblock size, and the threshold above which requests go to the global arena
    /// (0: 1 MiB, the minimum).
    pub superblock_size: u64,
    /// At most this many streams at once (0: 64).
    pub max_streams: u32,
}

/// Options of `strata_binning_create`: bins of `2^min_exponent ..= 2^max_exponent` bytes;
/// larger requests go to the upstream. Zero-initialised, it is 1 KiB ..= 4 MiB.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrataBinningOptions {
    /// The smallest bin is `2^min_exponent` bytes (0: 10, i.e. 1 KiB; at least 8).
    pub min_exponent: u32,
    /// The largest bin is `2^max_exponent` bytes (0: 22, i.e. 4 MiB).
    pub max_exponent: u32,
}

/// Options of `strata_async_create` (the driver's stream-ordered allocator, on a private pool).
/// Zero-initialised, it is RMM's default except for the release threshold: set
/// `release_threshold` to `UINT64_MAX` to keep all memory, as RMM does.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrataAsyncOptions {
    /// Prime the pool with one allocation of this many bytes, freed at once (0: no priming).
    pub initial_pool_size: u64,
    /// Reserved memory the pool keeps when it synchronises (`UINT64_MAX`: everything; 0:
    /// release all unused memory at each synchronisation).
    pub release_threshold: u64,
    /// The most memory the pool may reserve (0: the driver's limit).
    pub max_pool_size: u64,
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

/// The device of a C ordinal.
pub(crate) fn device(ordinal: i32) -> Result<Device, Failure> {
    let ordinal = usize::try_from(ordinal)
        .map_err(|_| Failure::invalid(format!("device ordinal {ordinal} is negative")))?;
    Ok(Device::get(ordinal)?)
}

/// A simulated device of `capacity` bytes (no memory behind its addresses).
pub(crate) fn sim_device(capacity: u64) -> Entry {
    Entry::base(
        Arc::new(ThreadSafe::new(SimUpstream::new(capacity))),
        None,
        "sim-device",
    )
}

/// `cuMemAlloc` / `cuMemFree` on `device`.
pub(crate) fn cuda_memory(device: Device) -> Entry {
    Entry::base(
        Arc::new(DeviceMemory::new(&device)),
        Some(device),
        "cuda-memory",
    )
}

/// The driver's stream-ordered allocator on a private pool of `device`.
pub(crate) fn async_pool(device: Device, o: &StrataAsyncOptions) -> Result<Entry, Failure> {
    let options = AsyncOptions {
        initial_pool_size: nonzero(o.initial_pool_size),
        release_threshold: o.release_threshold,
        max_pool_size: nonzero(o.max_pool_size),
        ..AsyncOptions::default()
    };
    let pool = Arc::new(Async::with_options(&device, options)?);
    let mut e = Entry::base(pool.clone(), Some(device), "async");
    e.async_pool = Some(pool);
    Ok(e)
}

/// The coalescing pool (streams ignored) over `up`.
pub(crate) fn pool(up: &Entry, o: &StrataPoolOptions) -> Result<Entry, Failure> {
    let pool = Pool::new(up.upstream(), o.config())?;
    Ok(up.over(Arc::new(pool), "pool"))
}

/// The stream-ordered pool over `up` (CUDA events order cross-stream reuse on a device).
pub(crate) fn stream_pool(up: &Entry, o: &StrataPoolOptions) -> Result<Entry, Failure> {
    let streams = if o.max_streams == 0 {
        DEFAULT_POOL_STREAMS
    } else {
        o.max_streams as usize
    };
    let reuse = if o.grow_first != 0 {
        Reuse::GrowFirst
    } else {
        Reuse::StealFirst
    };
    let mr: Arc<dyn MemoryResource> = match &up.device {
        Some(dev) => {
            let pool = Arc::new(
                StreamOrderedPool::<_, _>::with_streams(
                    up.upstream(),
                    EventOrder::new(dev),
                    o.config(),
                    streams,
                )?
                .with_reuse(reuse),
            );
            notify_on_stream_drop(&pool);
            pool
        }
        None => Arc::new(
            StreamOrderedPool::<_, _>::with_streams(
                up.upstream(),
                NoOrdering,
                o.config(),
                streams,
            )?
            .with_reuse(reuse),
        ),
    };
    Ok(up.over(mr, "stream-pool"))
}

/// The arena over `up`.
pub(crate) fn arena(up: &Entry, o: &StrataArenaOptions) -> Result<Entry, Failure> {
    if o.arena_size == 0 {
        return Err(Failure::invalid("an arena needs an arena_size"));
    }
    let mut config = ArenaConfig::new(o.arena_size);
    if o.superblock_size != 0 {
        config = config.with_superblock_size(o.superblock_size);
    }
    let streams = if o.max_streams == 0 {
        DEFAULT_ARENA_STREAMS
    } else {
        o.max_streams as usize
    };
    let mr: Arc<dyn MemoryResource> = match &up.device {
        Some(dev) => {
            let arena = Arc::new(Arena::<_, _>::with_streams(
                up.upstream(),
                EventOrder::new(dev),
                config,
                streams,
            )?);
            notify_on_stream_drop(&arena);
            arena
        }
        None => Arc::new(Arena::<_, _>::with_streams(
            up.upstream(),
            NoOrdering,
            config,
            streams,
        )?),
    };
    Ok(up.over(mr, "arena"))
}

/// Size-class bins over `up` (streams ignored).
pub(crate) fn binning(up: &Entry, o: &StrataBinningOptions) -> Result<Entry, Failure> {
    let min = if o.min_exponent == 0 {
        10
    } else {
        o.min_exponent
    };
    let max = if o.max_exponent == 0 {
        22
    } else {
        o.max_exponent
    };
    if !(8..=40).contains(&min) || !(min..=40).contains(&max) {
        return Err(Failure::invalid(format!(
            "bin exponents {min}..={max}: need 8 <= min <= max <= 40"
        )));
    }
    let bins = Binning::<_, Heap>::with_exponents(up.upstream(), min, max)?;
    Ok(up.over(Arc::new(bins), "binning"))
}

/// The statistics adaptor over `up`.
pub(crate) fn statistics(up: &Entry) -> Entry {
    let stats = Arc::new(Statistics::new(Arc::clone(&up.mr)));
    let mut e = up.adaptor(stats.clone(), "statistics");
    e.stats = Some(stats);
    e
}

/// The limiting adaptor (a byte budget) over `up`.
pub(crate) fn limiting(up: &Entry, limit: u64) -> Entry {
    up.adaptor(
        Arc::new(Limiting::new(Arc::clone(&up.mr), limit)),
        "limiting",
    )
}

/// The logging adaptor over `up`, writing RMM's CSV log to `path` (created or truncated).
pub(crate) fn logging(up: &Entry, path: PathBuf) -> Result<Entry, Failure> {
    let log = Arc::new(CsvLog::create(&path).map_err(|e| {
        Failure::from(e).with_context(&format!("cannot create the log {}", path.display()))
    })?);
    let mr = Arc::new(Logging::new(Arc::clone(&up.mr), Arc::clone(&log)));
    let mut e = up.adaptor(mr, "logging");
    e.log = Some(log);
    Ok(e)
}

/// A path from a C string.
///
/// # Safety
///
/// `path` is null or a NUL-terminated string.
pub(crate) unsafe fn path_arg(path: *const c_char) -> Result<PathBuf, Failure> {
    if path.is_null() {
        return Err(Failure::invalid("the path is null"));
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::invalid("the path is empty"));
    }
    #[cfg(unix)]
    let path = PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes));
    #[cfg(not(unix))]
    let path = PathBuf::from(
        std::str::from_utf8(bytes).map_err(|_| Failure::invalid("the path is not UTF-8"))?,
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::StreamKey;

    #[test]
    fn adaptors_pass_statistics_up_and_resources_do_not() {
        let sim = sim_device(1 << 30);
        let counted = statistics(&sim);
        let limited = limiting(&counted, 1 << 20);
        assert!(
            limited.stats.is_some(),
            "an adaptor shows its upstream's statistics"
        );
        let p = pool(&counted, &StrataPoolOptions::default()).unwrap();
        assert!(
            p.stats.is_none(),
            "a pool's upstream statistics count reserved bytes"
        );
        let a = p.mr.allocate(1000, 256, StreamKey::DEFAULT).unwrap();
        assert!(counted.stats.as_ref().unwrap().bytes().value >= 1000);
        p.mr.deallocate(a, 1000, 256, StreamKey::DEFAULT).unwrap();
    }

    #[test]
    fn bad_options_are_refused() {
        let sim = sim_device(1 << 30);
        assert!(arena(&sim, &StrataArenaOptions::default()).is_err());
        let bad = StrataBinningOptions {
            min_exponent: 20,
            max_exponent: 10,
        };
        assert!(binning(&sim, &bad).is_err());
        let too_big = StrataPoolOptions {
            initial_size: 2 << 30,
            ..Default::default()
        };
        assert_eq!(
            pool(&sim, &too_big).err().unwrap().status,
            crate::StrataStatus::OutOfMemory
        );
    }
}
