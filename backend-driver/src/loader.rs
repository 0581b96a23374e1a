//! Loading the CUDA driver at run time, without cudarc's panics.

use std::sync::OnceLock;

use crate::checked;
use crate::error::DriverError;
use crate::sys::{self, CUresult};

/// The oldest driver strata supports: CUDA 12.2 (12020), the first with
/// `cuMemPrefetchAsync_v2`, `cuMemAdvise_v2` and the memory pool's maximum size.
///
/// ```
/// assert_eq!(strata_driver::MIN_DRIVER_VERSION, 12020);
/// ```
pub const MIN_DRIVER_VERSION: i32 = 12020;

/// Every driver function strata calls. The loader checks that the library exports each of them
/// before the first call, so that a driver without one is an error
/// ([`DriverError::MissingSymbol`]) and never cudarc's "Missing symbol" panic.
pub(crate) const REQUIRED_SYMBOLS: &[&str] = &[
    "cuDriverGetVersion",
    "cuInit",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceTotalMem_v2",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuDeviceGetDefaultMemPool",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuCtxSynchronize",
    "cuMemGetInfo_v2",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemAllocManaged",
    "cuMemHostAlloc",
    "cuMemFreeHost",
    "cuMemAdvise_v2",
    "cuMemPrefetchAsync_v2",
    "cuStreamCreate",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuStreamQuery",
    "cuStreamWaitEvent",
    "cuEventCreate",
    "cuEventDestroy_v2",
    "cuEventRecord",
    "cuEventSynchronize",
    "cuEventQuery",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemcpyDtoDAsync_v2",
    "cuMemsetD8Async",
    "cuMemPoolCreate",
    "cuMemPoolDestroy",
    "cuMemPoolGetAttribute",
    "cuMemPoolSetAttribute",
    "cuMemPoolTrimTo",
    "cuMemPoolExportToShareableHandle",
    "cuMemAllocFromPoolAsync",
    "cuMemFreeAsync",
];

/// The loaded CUDA driver: its version and how many devices it sees.
///
/// Obtained from [`driver`]; holding a `&Driver` proves the library is loaded, initialised and
/// exports every function strata calls.
///
/// ```no_run
/// let d = strata_driver::driver()?;
/// assert!(d.version() >= strata_driver::MIN_DRIVER_VERSION);
/// assert!(d.device_count() >= 1);
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
#[derive(Debug)]
pub struct Driver {
    version: i32,
    device_count: usize,
}

impl Driver {
    /// The driver's version as `cuDriverGetVersion` reports it (1000 × major + 10 × minor).
    ///
    /// ```no_run
    /// let v = strata_driver::driver()?.version();
    /// println!("CUDA {}.{}", v / 1000, v % 1000 / 10);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn version(&self) -> i32 {
        self.version
    }

    /// How many CUDA devices the driver sees (at least one).
    ///
    /// ```no_run
    /// assert!(strata_driver::driver()?.device_count() >= 1);
    /// # Ok::<(), strata_driver::DriverError>(())
    /// ```
    pub fn device_count(&self) -> usize {
        self.device_count
    }
}

static DRIVER: OnceLock<Result<Driver, DriverError>> = OnceLock::new();

/// Loads and initialises the CUDA driver, once per process; later calls return the same answer.
///
/// The probe never panics: it looks for the library first (cudarc's `is_culib_present`), reads
/// the driver version, checks that every function strata calls is exported, then calls
/// `cuInit` and counts the devices. Every other entry point of this crate goes through it.
///
/// # Errors
///
/// - [`DriverError::NoDriver`]: no loadable `libcuda`, or the toolkit's stub library;
/// - [`DriverError::DriverTooOld`]: older than [`MIN_DRIVER_VERSION`];
/// - [`DriverError::MissingSymbol`]: the library lacks a function strata calls;
/// - [`DriverError::NoDevice`]: the driver sees no device;
/// - [`DriverError::Call`]: `cuInit` or `cuDeviceGetCount` failed otherwise.
///
/// ```
/// match strata_driver::driver() {
///     Ok(d) => println!("CUDA driver {} with {} device(s)", d.version(), d.device_count()),
///     Err(e) => println!("no GPU here: {e}"),
/// }
/// ```
pub fn driver() -> Result<&'static Driver, DriverError> {
    DRIVER.get_or_init(load).as_ref().map_err(|e| *e)
}

fn load() -> Result<Driver, DriverError> {
    // cudarc panics (instead of returning an error) if the library vanished between the probe
    // and the load; keep even that from unwinding into the caller.
    std::panic::catch_unwind(load_unguarded).unwrap_or(Err(DriverError::NoDriver))
}

fn load_unguarded() -> Result<Driver, DriverError> {
    // SAFETY: `is_culib_present` only tries to open the candidate library names with
    // libloading and drops the handle; it runs no code of the library but its initialisers.
    if !unsafe { sys::is_culib_present() } {
        return Err(DriverError::NoDriver);
    }
    // SAFETY: the library is present, so `culib` opens it (and caches it) instead of panicking.
    let lib = unsafe { sys::culib() };
    let has = |name: &str| {
        // SAFETY: only the symbol's address is looked up (as an untyped function pointer that
        // is never called); cudarc casts it to the right type at the first call.
        unsafe { lib.get::<unsafe extern "C" fn()>(name.as_bytes()) }.is_ok()
    };
    for name in ["cuDriverGetVersion", "cuInit"] {
        if !has(name) {
            return Err(DriverError::NoDriver);
        }
    }
    let version = checked::driver_get_version()?;
    if version < MIN_DRIVER_VERSION {
        return Err(DriverError::DriverTooOld {
            found: version,
            required: MIN_DRIVER_VERSION,
        });
    }
    if let Some(name) = REQUIRED_SYMBOLS.iter().find(|n| !has(n)) {
        return Err(DriverError::MissingSymbol { name });
    }
    match checked::init_raw() {
        CUresult::CUDA_SUCCESS => {}
        CUresult::CUDA_ERROR_NO_DEVICE => return Err(DriverError::NoDevice),
        CUresult::CUDA_ERROR_STUB_LIBRARY => return Err(DriverError::NoDriver),
        code => {
            return Err(DriverError::Call {
                call: "cuInit",
                code,
            });
        }
    }
    let count = checked::device_get_count()?;
    if count <= 0 {
        return Err(DriverError::NoDevice);
    }
    Ok(Driver {
        version,
        device_count: count as usize,
    })
}

/// Whether a CUDA driver library can be loaded on this machine (without initialising it).
///
/// ```
/// if !strata_driver::driver_library_present() {
///     assert_eq!(strata_driver::driver().unwrap_err(), strata_driver::DriverError::NoDriver);
/// }
/// ```
pub fn driver_library_present() -> bool {
    // SAFETY: as in `load_unguarded`: it only tries to open the library.
    unsafe { sys::is_culib_present() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_list_has_no_duplicates() {
        let mut v = REQUIRED_SYMBOLS.to_vec();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), REQUIRED_SYMBOLS.len());
    }

    #[test]
    fn driver_answers_without_panicking_and_consistently() {
        let first = driver().map(|d| (d.version(), d.device_count()));
        let second = driver().map(|d| (d.version(), d.device_count()));
        assert_eq!(first, second);
        if !driver_library_present() {
            assert_eq!(first, Err(DriverError::NoDriver));
        }
    }
}
