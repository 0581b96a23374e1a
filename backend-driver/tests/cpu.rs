//! CPU tests of the driver backend: what needs no GPU. In CI there is no libcuda, and every
//! entry point must answer `NoDriver` (never panic); on a machine with a driver they must
//! answer consistently.

use strata_core::Error;
use strata_driver::sys::CUresult;
use strata_driver::{
    AsyncOptions, Device, DriverError, IpcHandle, MIN_DRIVER_VERSION, driver,
    driver_library_present,
};

#[test]
fn every_entry_point_answers_without_panicking() {
    let results = std::panic::catch_unwind(|| {
        (
            driver().map(|d| d.device_count()),
            Device::count(),
            Device::get(0).map(|d| d.ordinal()),
            Device::get(usize::MAX).map(|d| d.ordinal()),
            Device::all().map(|v| v.len()),
        )
    })
    .expect("no entry point panics");
    let (drv, count, first, huge, all) = results;
    if !driver_library_present() {
        assert_eq!(drv, Err(DriverError::NoDriver));
        assert_eq!(count, Err(DriverError::NoDriver));
        assert_eq!(first, Err(DriverError::NoDriver));
        assert_eq!(huge, Err(DriverError::NoDriver));
        assert_eq!(all, Err(DriverError::NoDriver));
    } else if let Ok(n) = drv {
        assert_eq!(count, Ok(n));
        assert_eq!(first, Ok(0));
        assert_eq!(
            huge,
            Err(DriverError::InvalidDevice {
                ordinal: usize::MAX,
                count: n
            })
        );
        assert_eq!(all, Ok(n));
    } else {
        // a driver library without a usable GPU: every entry point gives the same error
        let e = drv.unwrap_err();
        assert_eq!(count, Err(e));
        assert_eq!(first, Err(e));
        assert_eq!(all, Err(e));
    }
}

#[test]
fn loading_errors_map_into_the_core_vocabulary() {
    for e in [
        DriverError::NoDriver,
        DriverError::NoDevice,
        DriverError::DriverTooOld {
            found: 11080,
            required: MIN_DRIVER_VERSION,
        },
        DriverError::MissingSymbol {
            name: "cuMemPoolCreate",
        },
    ] {
        assert!(matches!(Error::from(e), Error::Unsupported { .. }), "{e}");
    }
    let oom = DriverError::Core(Error::OutOfMemory {
        requested: 1 << 50,
        largest_free: 0,
        total_free: 1 << 30,
    });
    assert_eq!(
        Error::from(oom),
        Error::OutOfMemory {
            requested: 1 << 50,
            largest_free: 0,
            total_free: 1 << 30
        }
    );
    let call = DriverError::Call {
        call: "cuMemFreeAsync",
        code: CUresult::CUDA_ERROR_INVALID_VALUE,
    };
    assert_eq!(
        Error::from(call),
        Error::Backend {
            call: "cuMemFreeAsync",
            code: 1
        }
    );
    // `?` converts a driver error inside a function returning the core's error
    fn inner() -> Result<(), Error> {
        Err(DriverError::NoDevice)?;
        Ok(())
    }
    assert!(inner().is_err());
}

#[test]
fn async_defaults_are_rmms() {
    let o = AsyncOptions::default();
    assert_eq!(o.release_threshold, u64::MAX);
    assert_eq!(o.initial_pool_size, None);
    assert_eq!(o.max_pool_size, None);
    assert_eq!(o.ipc, IpcHandle::None);
}
