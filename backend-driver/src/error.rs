//! The driver backend's error type, and its conversion into the core's [`strata_core::Error`].

use core::fmt;

use crate::sys::CUresult;

/// Everything that can go wrong in a call of the driver backend.
///
/// Driver calls that fail become [`DriverError::Call`], which names the call and carries its
/// `CUresult`; failures that the core's vocabulary describes (out of memory, a zero-size
/// request, an unknown stream, a bad free) are [`DriverError::Core`]. Every `DriverError`
/// converts into a [`strata_core::Error`] (what the [`MemoryResource`](strata_core::MemoryResource)
/// methods return), and `?` does it.
///
/// ```
/// use strata_driver::{sys::CUresult, DriverError};
/// let e = DriverError::Call { call: "cuMemAlloc_v2", code: CUresult::CUDA_ERROR_INVALID_VALUE };
/// assert_eq!(e.to_string(), "cuMemAlloc_v2 failed: CUDA_ERROR_INVALID_VALUE (1)");
/// let core: strata_core::Error = e.into();
/// assert_eq!(core, strata_core::Error::Backend { call: "cuMemAlloc_v2", code: 1 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverError {
    /// The CUDA driver library (`libcuda.so.1`, `nvcuda.dll`) could not be loaded, or it is the
    /// toolkit's stub library.
    NoDriver,
    /// The driver loaded, but reports no CUDA device.
    NoDevice,
    /// The driver is older than the oldest one strata supports ([`MIN_DRIVER_VERSION`](crate::MIN_DRIVER_VERSION)).
    DriverTooOld {
        /// The driver's version, as `cuDriverGetVersion` reports it (e.g. 12020 for 12.2).
        found: i32,
        /// The oldest version strata supports.
        required: i32,
    },
    /// The driver library lacks a function strata calls.
    MissingSymbol {
        /// The function's name.
        name: &'static str,
    },
    /// No device has this ordinal.
    InvalidDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many devices there are.
        count: usize,
    },
    /// A driver call returned an error.
    Call {
        /// The driver function, e.g. `"cuMemAlloc_v2"`.
        call: &'static str,
        /// What it returned.
        code: CUresult,
    },
    /// A host slice's length differs from the device buffer's (both in bytes).
    LengthMismatch {
        /// The device side's length.
        device: u64,
        /// The host side's length.
        host: u64,
    },
    /// An index past the end of a device vector.
    OutOfBounds {
        /// The index given.
        index: usize,
        /// The vector's length.
        len: usize,
    },
    /// [`set_default_resource`](crate::set_default_resource) for a device whose default was
    /// already set, or already read.
    DefaultAlreadySet {
        /// The device's ordinal.
        ordinal: usize,
    },
    /// An error in the core's vocabulary: out of memory, bad request, bad free, unknown stream.
    Core(strata_core::Error),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DriverError::NoDriver => f.write_str("no CUDA driver: libcuda could not be loaded"),
            DriverError::NoDevice => f.write_str("the CUDA driver reports no device"),
            DriverError::DriverTooOld { found, required } => write!(
                f,
                "CUDA driver {}.{} is too old: strata needs {}.{} or newer",
                found / 1000,
                found % 1000 / 10,
                required / 1000,
                required % 1000 / 10
            ),
            DriverError::MissingSymbol { name } => {
                write!(f, "the CUDA driver lacks the function {name}")
            }
            DriverError::InvalidDevice { ordinal, count } => {
                write!(f, "no CUDA device {ordinal}: there are {count}")
            }
            DriverError::Call { call, code } => {
                write!(f, "{call} failed: {code:?} ({})", code as u32)
            }
            DriverError::LengthMismatch { device, host } => write!(
                f,
                "length mismatch: the device side has {device} B, the host side {host} B"
            ),
            DriverError::OutOfBounds { index, len } => {
                write!(f, "index {index} out of bounds for length {len}")
            }
            DriverError::DefaultAlreadySet { ordinal } => write!(
                f,
                "the default resource of device {ordinal} was already set or read"
            ),
            DriverError::Core(e) => fmt::Display::fmt(&e, f),
        }
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DriverError::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<strata_core::Error> for DriverError {
    fn from(e: strata_core::Error) -> Self {
        DriverError::Core(e)
    }
}

impl From<DriverError> for strata_core::Error {
    /// Maps a driver error into the core's vocabulary: a failed call becomes
    /// [`Error::Backend`](strata_core::Error::Backend) with the call's name and numeric
    /// `CUresult`; the loading errors become [`Error::Unsupported`](strata_core::Error::Unsupported).
    fn from(e: DriverError) -> Self {
        use strata_core::Error;
        match e {
            DriverError::Core(e) => e,
            DriverError::Call { call, code } => Error::Backend {
                call,
                code: code as u32,
            },
            DriverError::NoDriver => Error::Unsupported {
                what: "no CUDA driver (libcuda could not be loaded)",
            },
            DriverError::NoDevice => Error::Unsupported {
                what: "no CUDA device",
            },
            DriverError::DriverTooOld { .. } => Error::Unsupported {
                what: "the CUDA driver is too old",
            },
            DriverError::MissingSymbol { .. } => Error::Unsupported {
                what: "the CUDA driver lacks a function strata calls",
            },
            DriverError::InvalidDevice { .. } => Error::Unsupported {
                what: "no CUDA device with that ordinal",
            },
            DriverError::LengthMismatch { device, host } => Error::SizeMismatch {
                addr: 0,
                allocated: device,
                given: host,
            },
            DriverError::OutOfBounds { index, len } => Error::TooLarge {
                requested: index as u64,
                max: len as u64,
            },
            DriverError::DefaultAlreadySet { .. } => Error::Unsupported {
                what: "the default resource was already set or read",
            },
        }
    }
}

/// Turns a `CUresult` into a `Result`, naming the call on failure.
pub(crate) fn check(call: &'static str, code: CUresult) -> Result<(), DriverError> {
    if code == CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(DriverError::Call { call, code })
    }
}

impl DriverError {
    /// Whether this is a failed driver call that returned `code`.
    ///
    /// ```
    /// use strata_driver::{sys::CUresult, DriverError};
    /// let e = DriverError::Call { call: "cuMemAlloc_v2", code: CUresult::CUDA_ERROR_OUT_OF_MEMORY };
    /// assert!(e.is_call_error(CUresult::CUDA_ERROR_OUT_OF_MEMORY));
    /// assert!(!DriverError::NoDriver.is_call_error(CUresult::CUDA_ERROR_OUT_OF_MEMORY));
    /// ```
    pub fn is_call_error(&self, code: CUresult) -> bool {
        matches!(*self, DriverError::Call { code: c, .. } if c == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::Error;

    #[test]
    fn every_variant_displays_and_converts() {
        let all = [
            DriverError::NoDriver,
            DriverError::NoDevice,
            DriverError::DriverTooOld {
                found: 11080,
                required: 12020,
            },
            DriverError::MissingSymbol {
                name: "cuMemPoolCreate",
            },
            DriverError::InvalidDevice {
                ordinal: 3,
                count: 1,
            },
            DriverError::Call {
                call: "cuInit",
                code: CUresult::CUDA_ERROR_NO_DEVICE,
            },
            DriverError::LengthMismatch { device: 8, host: 4 },
            DriverError::OutOfBounds { index: 9, len: 2 },
            DriverError::DefaultAlreadySet { ordinal: 0 },
            DriverError::Core(Error::ZeroSize),
        ];
        for e in all {
            assert!(!e.to_string().is_empty());
            let _: Error = e.into();
        }
        assert_eq!(
            DriverError::DriverTooOld {
                found: 11080,
                required: 12020
            }
            .to_string(),
            "CUDA driver 11.8 is too old: strata needs 12.2 or newer"
        );
        assert_eq!(
            Error::from(DriverError::Call {
                call: "cuInit",
                code: CUresult::CUDA_ERROR_NO_DEVICE
            }),
            Error::Backend {
                call: "cuInit",
                code: 100
            }
        );
        assert_eq!(
            Error::from(DriverError::Core(Error::UnknownStream { stream: 7 })),
            Error::UnknownStream { stream: 7 }
        );
    }

    #[test]
    fn check_maps_success_and_failure() {
        assert_eq!(check("cuInit", CUresult::CUDA_SUCCESS), Ok(()));
        let e = check("cuMemFree_v2", CUresult::CUDA_ERROR_INVALID_VALUE).unwrap_err();
        assert!(e.is_call_error(CUresult::CUDA_ERROR_INVALID_VALUE));
        assert_eq!(
            e.to_string(),
            "cuMemFree_v2 failed: CUDA_ERROR_INVALID_VALUE (1)"
        );
    }
}
