//! The per-device default resources behind PyTorch's and CuPy's allocator hooks: configured
//! once (environment variables or `strata_default_configure`), created lazily on each device's
//! first allocation, alive for the rest of the process.

use std::ffi::{c_char, c_int};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};

use strata::logging::{CsvLog, device_log_path};
use strata_core::MemoryResource;
use strata_core::adaptors::{Statistics, Stats};
use strata_driver::Async;

use crate::error::{Failure, StrataStatus};
use crate::registry::Lookup;
use crate::resources::{
    self, Entry, StrataArenaOptions, StrataAsyncOptions, StrataBinningOptions, StrataPoolOptions,
};
use crate::{HANDLES, StrataStatistics};

/// The resource kinds a default resource can be (`strata_default_config::kind`, and the
/// environment variable `STRATA_RESOURCE`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrataKind {
    /// `cuMemAlloc` / `cuMemFree` for every request (`STRATA_RESOURCE=cuda`): no caching.
    Cuda = 0,
    /// The driver's stream-ordered allocator on a private pool that keeps its memory
    /// (`async`).
    Async = 1,
    /// strata's coalescing pool over `cuMemAlloc`; streams are ignored, so a block freed on
    /// one stream is at once reused on any (`pool`): for programs that use one stream.
    Pool = 2,
    /// strata's stream-ordered pool over `cuMemAlloc`: blocks are reused on their stream at
    /// once, and cross streams after a CUDA event (`stream-pool`, the default).
    StreamPool = 3,
    /// strata's arena: one allocation of the arena size, a sub-arena per stream (`arena`).
    Arena = 4,
    /// Bins of 1 KiB ..= 4 MiB over the coalescing pool, which also serves larger requests;
    /// streams are ignored (`binning`).
    Binning = 5,
}

impl StrataKind {
    const ALL: [StrataKind; 6] = [
        StrataKind::Cuda,
        StrataKind::Async,
        StrataKind::Pool,
        StrataKind::StreamPool,
        StrataKind::Arena,
        StrataKind::Binning,
    ];

    /// The name `STRATA_RESOURCE` takes.
    pub fn name(self) -> &'static str {
        match self {
            StrataKind::Cuda => "cuda",
            StrataKind::Async => "async",
            StrataKind::Pool => "pool",
            StrataKind::StreamPool => "stream-pool",
            StrataKind::Arena => "arena",
            StrataKind::Binning => "binning",
        }
    }

    fn from_u32(v: u32) -> Option<StrataKind> {
        StrataKind::ALL.into_iter().find(|k| *k as u32 == v)
    }

    fn parse(s: &str) -> Option<StrataKind> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        StrataKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// How the default resources are made (`strata_default_configure`). Zero-initialised, it is a
/// `STRATA_KIND_CUDA` resource with no log; set `kind` to what you want.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StrataDefaultConfig {
    /// A `strata_kind` value.
    pub kind: u32,
    /// The pools' initial size, the arena's size, the async pool's priming size, in bytes
    /// (0: pools start empty and grow on demand; the arena takes half the device's free
    /// memory; no priming).
    pub initial_size: u64,
    /// The most the pool (or the async pool) may hold, in bytes (0: no maximum).
    pub maximum_size: u64,
    /// RMM CSV log of every allocation and free, one file per device (`.dev<N>` inserted
    /// before the extension); NULL: no log. Copied by `strata_default_configure`.
    pub log_path: *const c_char,
}

/// A size setting: bytes, or a percentage of the device's free memory at creation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Size {
    Unset,
    Bytes(u64),
    PercentOfFree(f64),
}

/// The configuration in Rust terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) kind: StrataKind,
    pub(crate) initial: Size,
    pub(crate) maximum: Size,
    pub(crate) log: Option<PathBuf>,
}

/// Parses a size: decimal bytes with an optional unit (`K`, `M`, `G`, `T`, with or without
/// `i` and `B`, powers of 1024 all), or `N%` of the device's free memory.
pub(crate) fn parse_size(text: &str) -> Option<Size> {
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().ok()?;
        return (p > 0.0 && p <= 100.0).then_some(Size::PercentOfFree(p));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift).map(Size::Bytes)
}

impl Config {
    /// From `STRATA_RESOURCE`, `STRATA_POOL_SIZE`, `STRATA_POOL_MAX` and `STRATA_LOG`, read by
    /// `var`.
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config, Failure> {
        let kind = match var("STRATA_RESOURCE") {
            None => StrataKind::StreamPool,
            Some(s) => StrataKind::parse(&s).ok_or_else(|| {
                Failure::invalid(format!(
                    "STRATA_RESOURCE={s}: expected one of cuda, async, pool, stream-pool, arena, binning"
                ))
            })?,
        };
        let size = |name: &str| -> Result<Size, Failure> {
            match var(name) {
                None => Ok(Size::Unset),
                Some(s) => parse_size(&s).ok_or_else(|| {
                    Failure::invalid(format!(
                        "{name}={s}: expected bytes (e.g. 4GiB, 512M, 1048576) or a percentage of free memory (e.g. 50%)"
                    ))
                }),
            }
        };
        Ok(Config {
            kind,
            initial: size("STRATA_POOL_SIZE")?,
            maximum: size("STRATA_POOL_MAX")?,
            log: var("STRATA_LOG")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        })
    }

    fn from_env() -> Result<Config, Failure> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// From the C struct.
    ///
    /// # Safety
    ///
    /// `c.log_path` is null or a NUL-terminated string.
    pub(crate) unsafe fn from_c(c: &StrataDefaultConfig) -> Result<Config, Failure> {
        let kind = StrataKind::from_u32(c.kind)
            .ok_or_else(|| Failure::invalid(format!("unknown resource kind {}", c.kind)))?;
        let bytes = |v: u64| if v == 0 { Size::Unset } else { Size::Bytes(v) };
        let log = if c.log_path.is_null() {
            None
        } else {
            // SAFETY: non-null, and the caller guarantees a NUL-terminated string.
            Some(unsafe { resources::path_arg(c.log_path) }?)
        };
        Ok(Config {
            kind,
            initial: bytes(c.initial_size),
            maximum: bytes(c.maximum_size),
            log,
        })
    }
}

/// How a default resource's reserved memory is read.
enum Reserved {
    /// A statistics adaptor between the resource and `cuMemAlloc`.
    Upstream(Arc<Statistics<Arc<dyn MemoryResource>>>),
    /// The async resource's driver pool.
    Driver(Arc<Async>),
}

/// A device's default resource.
pub(crate) struct DeviceDefault {
    /// Its handle (pinned: `strata_resource_destroy` refuses it).
    pub(crate) handle: usize,
    /// The resource: statistics over (a log over) the configured kind.
    pub(crate) entry: Arc<Entry>,
    reserved: Reserved,
}

/// The most devices with a default resource.
pub(crate) const MAX_DEVICES: usize = 64;

static DEFAULTS: [OnceLock<DeviceDefault>; MAX_DEVICES] = [const { OnceLock::new() }; MAX_DEVICES];

/// The configuration (`None` until configured or first read from the environment). Held while
/// a default resource is created, so configuration and creation never interleave.
static CONFIG: Mutex<Option<Config>> = Mutex::new(None);

fn config_lock() -> MutexGuard<'static, Option<Config>> {
    CONFIG.lock().unwrap_or_else(|p| p.into_inner())
}

fn slot(device: c_int) -> Result<&'static OnceLock<DeviceDefault>, Failure> {
    usize::try_from(device)
        .ok()
        .and_then(|d| DEFAULTS.get(d))
        .ok_or_else(|| {
            Failure::new(
                StrataStatus::NoDevice,
                format!("device {device}: default resources exist for devices 0..{MAX_DEVICES}"),
            )
        })
}

/// Sets the configuration of the default resources.
///
/// # Errors
///
/// [`StrataStatus::AlreadyInitialized`] once a default resource exists.
pub(crate) fn configure(config: Option<Config>) -> Result<(), Failure> {
    let mut current = config_lock();
    if DEFAULTS.iter().any(|d| d.get().is_some()) {
        return Err(Failure::new(
            StrataStatus::AlreadyInitialized,
            "the default resources are configured before the first one is created",
        ));
    }
    *current = Some(match config {
        Some(c) => c,
        None => Config::from_env()?,
    });
    Ok(())
}

/// The default resource of `device` if it exists.
pub(crate) fn existing(device: c_int) -> Result<Option<&'static DeviceDefault>, Failure> {
    Ok(slot(device)?.get())
}

/// The default resource of `device`, created on first use.
pub(crate) fn get_or_create(device: c_int) -> Result<&'static DeviceDefault, Failure> {
    let slot = slot(device)?;
    if let Some(d) = slot.get() {
        return Ok(d);
    }
    let mut config = config_lock();
    if let Some(d) = slot.get() {
        return Ok(d);
    }
    let cfg = match config.as_ref() {
        Some(c) => c.clone(),
        None => {
            let c = Config::from_env()?;
            *config = Some(c.clone());
            c
        }
    };
    let made = build(&cfg, device).map_err(|f| {
        f.with_context(&format!(
            "cannot create the default {} resource of device {device}",
            cfg.kind.name()
        ))
    })?;
    // Only this thread sets the slot (under the configuration lock), and it was empty.
    let _ = slot.set(made);
    slot.get()
        .ok_or_else(|| Failure::new(StrataStatus::Internal, "the default resource vanished"))
}

fn build(cfg: &Config, ordinal: c_int) -> Result<DeviceDefault, Failure> {
    let device = resources::device(ordinal)?;
    let free = || -> Result<u64, Failure> { Ok(device.memory_info()?.free) };
    let bytes = |s: Size| -> Result<u64, Failure> {
        Ok(match s {
            Size::Unset => 0,
            Size::Bytes(b) => b,
            Size::PercentOfFree(p) => (free()? as f64 * p / 100.0) as u64,
        })
    };
    let initial = bytes(cfg.initial)?;
    let maximum = bytes(cfg.maximum)?;
    let pool_options = StrataPoolOptions {
        initial_size: initial,
        maximum_size: maximum,
        ..StrataPoolOptions::default()
    };
    let (resource, reserved) = if cfg.kind == StrataKind::Async {
        let options = StrataAsyncOptions {
            initial_pool_size: initial,
            release_threshold: u64::MAX,
            max_pool_size: maximum,
        };
        let e = resources::async_pool(device.clone(), &options)?;
        let pool = e
            .async_pool
            .clone()
            .ok_or_else(|| Failure::new(StrataStatus::Internal, "async without its pool"))?;
        (e, Reserved::Driver(pool))
    } else {
        let counted = resources::statistics(&resources::cuda_memory(device.clone()));
        let reserved = counted
            .stats
            .clone()
            .ok_or_else(|| Failure::new(StrataStatus::Internal, "statistics without stats"))?;
        let e = match cfg.kind {
            StrataKind::Pool => resources::pool(&counted, &pool_options)?,
            StrataKind::StreamPool => resources::stream_pool(&counted, &pool_options)?,
            StrataKind::Arena => {
                let arena_size = if initial == 0 { free()? / 2 } else { initial };
                let options = StrataArenaOptions {
                    arena_size,
                    ..StrataArenaOptions::default()
                };
                resources::arena(&counted, &options)?
            }
            StrataKind::Binning => resources::binning(
                &resources::pool(&counted, &pool_options)?,
                &StrataBinningOptions::default(),
            )?,
            StrataKind::Cuda | StrataKind::Async => counted,
        };
        (e, Reserved::Upstream(reserved))
    };
    let logged = match &cfg.log {
        Some(path) => {
            let e = resources::logging(&resource, device_log_path(path, device.ordinal() as u32))?;
            if let Some(log) = &e.log {
                flush_at_exit(Arc::clone(log));
            }
            e
        }
        None => resource,
    };
    let mut top = resources::statistics(&logged);
    top.kind = cfg.kind.name();
    top.pinned = true;
    let entry = Arc::new(top);
    let handle = HANDLES
        .insert(Arc::clone(&entry))
        .ok_or_else(|| Failure::new(StrataStatus::OutOfMemory, "no handle slot left"))?;
    Ok(DeviceDefault {
        handle,
        entry,
        reserved,
    })
}

/// The logs of the default resources, which live as long as the process: Rust never drops
/// them, so they are flushed by an `atexit` handler.
static EXIT_LOGS: Mutex<Vec<Arc<CsvLog<BufWriter<File>>>>> = Mutex::new(Vec::new());

unsafe extern "C" {
    /// The C library's `atexit`.
    fn atexit(callback: extern "C" fn()) -> c_int;
}

/// Flushes the default resources' logs (registered with `atexit`; never unwinds).
extern "C" fn flush_exit_logs() {
    let _ = std::panic::catch_unwind(|| {
        let logs = EXIT_LOGS.lock().unwrap_or_else(|p| p.into_inner());
        for log in logs.iter() {
            let _ = log.flush();
        }
    });
}

/// Keeps `log` to be flushed when the process exits.
fn flush_at_exit(log: Arc<CsvLog<BufWriter<File>>>) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: `flush_exit_logs` is an `extern "C" fn()` that never unwinds, and it only
        // touches a static, which outlives every exit handler.
        let _ = unsafe { atexit(flush_exit_logs) };
    });
    EXIT_LOGS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(log);
}

impl DeviceDefault {
    /// Bytes and allocations handed to the callers.
    pub(crate) fn allocated(&self) -> StrataStatistics {
        self.entry
            .stats
            .as_ref()
            .map(|s| StrataStatistics::from(s.stats()))
            .unwrap_or_default()
    }

    /// Bytes the resource holds from the device (with `cuMemAlloc` calls as the count), or,
    /// for the async kind, what the driver pool reserves (current and high-water mark; no
    /// counts).
    pub(crate) fn reserved(&self) -> Result<StrataStatistics, Failure> {
        Ok(match &self.reserved {
            Reserved::Upstream(s) => StrataStatistics::from(s.stats()),
            Reserved::Driver(pool) => {
                let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                let current = signed(pool.reserved_current()?);
                StrataStatistics {
                    current_bytes: current,
                    peak_bytes: signed(pool.reserved_high()?),
                    ..StrataStatistics::default()
                }
            }
        })
    }
}

impl From<Stats> for StrataStatistics {
    fn from(s: Stats) -> StrataStatistics {
        StrataStatistics {
            current_bytes: s.bytes.value,
            peak_bytes: s.bytes.peak,
            total_bytes: s.bytes.total,
            current_count: s.count.value,
            peak_count: s.count.peak,
            total_count: s.count.total,
        }
    }
}

/// The handle's lookup failure, as the C interface reports it.
pub(crate) fn lookup_failure(handle: usize, why: Lookup) -> Failure {
    let message = match why {
        Lookup::Malformed => format!("{handle:#x} is not a strata handle"),
        Lookup::Stale => format!("unknown or destroyed handle {handle:#x}"),
    };
    Failure::new(StrataStatus::UnknownHandle, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn sizes_parse_like_the_docs_say() {
        assert_eq!(parse_size("1048576"), Some(Size::Bytes(1 << 20)));
        assert_eq!(parse_size("4GiB"), Some(Size::Bytes(4 << 30)));
        assert_eq!(parse_size(" 512M "), Some(Size::Bytes(512 << 20)));
        assert_eq!(parse_size("2 kb"), Some(Size::Bytes(2048)));
        assert_eq!(parse_size("50%"), Some(Size::PercentOfFree(50.0)));
        for bad in ["", "x", "12Q", "0%", "101%", "-3", "99999999999999999999"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_size("17179869184T"), None, "overflow");
    }

    #[test]
    fn the_environment_configures_the_defaults() {
        let c = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(c.kind, StrataKind::StreamPool);
        assert_eq!(
            (c.initial, c.maximum, c.log),
            (Size::Unset, Size::Unset, None)
        );
        let c = Config::from_vars(vars(&[
            ("STRATA_RESOURCE", "Arena"),
            ("STRATA_POOL_SIZE", "8GiB"),
            ("STRATA_POOL_MAX", "90%"),
            ("STRATA_LOG", "/tmp/log.csv"),
        ]))
        .unwrap();
        assert_eq!(c.kind, StrataKind::Arena);
        assert_eq!(c.initial, Size::Bytes(8 << 30));
        assert_eq!(c.maximum, Size::PercentOfFree(90.0));
        assert_eq!(c.log, Some(PathBuf::from("/tmp/log.csv")));
        for k in StrataKind::ALL {
            let c = Config::from_vars(vars(&[("STRATA_RESOURCE", k.name())])).unwrap();
            assert_eq!(c.kind, k);
        }
        assert_eq!(
            Config::from_vars(vars(&[("STRATA_RESOURCE", "stream_pool")]))
                .unwrap()
                .kind,
            StrataKind::StreamPool
        );
        let e = Config::from_vars(vars(&[("STRATA_RESOURCE", "magic")])).unwrap_err();
        assert_eq!(e.status, StrataStatus::InvalidArgument);
        let e = Config::from_vars(vars(&[("STRATA_POOL_SIZE", "lots")])).unwrap_err();
        assert!(e.message.starts_with("STRATA_POOL_SIZE=lots"), "{e}");
    }

    #[test]
    fn default_logs_are_flushed_at_exit() {
        let path = std::env::temp_dir().join(format!("strata-exit-{}.csv", std::process::id()));
        let log = Arc::new(CsvLog::create(&path).unwrap());
        log.record(
            strata::trace::Action::Allocate,
            0x1000,
            256,
            strata_core::StreamKey(7),
        );
        flush_at_exit(Arc::clone(&log));
        let before = std::fs::read_to_string(&path).unwrap();
        assert!(!before.contains("allocate"), "buffered until flushed");
        flush_exit_logs(); // what the exit handler runs
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.ends_with(",allocate,0x1000,256,7\n"), "{after:?}");
        EXIT_LOGS.lock().unwrap().clear();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_c_struct_configures_the_defaults() {
        let c = StrataDefaultConfig {
            kind: StrataKind::Pool as u32,
            initial_size: 1 << 30,
            maximum_size: 0,
            log_path: c"/tmp/x.csv".as_ptr(),
        };
        // SAFETY: the path is a NUL-terminated literal.
        let parsed = unsafe { Config::from_c(&c) }.unwrap();
        assert_eq!(parsed.kind, StrataKind::Pool);
        assert_eq!(parsed.initial, Size::Bytes(1 << 30));
        assert_eq!(parsed.maximum, Size::Unset);
        let bad = StrataDefaultConfig { kind: 99, ..c };
        // SAFETY: as above.
        assert!(unsafe { Config::from_c(&bad) }.is_err());
    }
}
