//! Status codes, the thread-local last error message, and the guard that keeps every call from
//! unwinding across the C boundary.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use strata_core::Error;
use strata_driver::DriverError;

/// What a call of the C interface returns: `STRATA_STATUS_OK` (0) or why it failed.
///
/// A failed call changes nothing, and leaves a message for `strata_last_error_message()` on
/// the calling thread.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrataStatus {
    /// Success.
    Ok = 0,
    /// The resource cannot serve the request: out of device (or simulated) memory, a byte
    /// limit reached, or its metadata full.
    OutOfMemory = 1,
    /// A bad argument: a zero size, an alignment that is not a power of two, a null pointer
    /// where one is required, a bad option.
    InvalidArgument = 2,
    /// A handle that was never created, or was destroyed (handles carry a generation number,
    /// so a stale handle is detected even after its slot is reused).
    UnknownHandle = 3,
    /// A free of a block that is already free.
    DoubleFree = 4,
    /// A free of an address the resource did not hand out (or already took back and merged).
    NotAllocated = 5,
    /// A free whose size differs from the allocation's.
    SizeMismatch = 6,
    /// A stream the resource does not know or has retired.
    UnknownStream = 7,
    /// No usable CUDA driver: `libcuda` could not be loaded, is too old, or lacks a function.
    NoDriver = 8,
    /// The driver loaded, but there is no CUDA device with that ordinal.
    NoDevice = 9,
    /// A CUDA driver call failed (the message names the call and its `CUresult`).
    DriverError = 10,
    /// The resource or build does not support the operation (e.g. statistics of a resource
    /// without a statistics adaptor).
    Unsupported = 11,
    /// Writing the allocation log failed.
    IoError = 12,
    /// The default resources are configured once, before the first one is created.
    AlreadyInitialized = 13,
    /// A bug in strata: a call panicked (the panic was caught, not propagated).
    Internal = 14,
}

impl StrataStatus {
    /// Every status, in numeric order.
    pub(crate) const ALL: [StrataStatus; 15] = [
        StrataStatus::Ok,
        StrataStatus::OutOfMemory,
        StrataStatus::InvalidArgument,
        StrataStatus::UnknownHandle,
        StrataStatus::DoubleFree,
        StrataStatus::NotAllocated,
        StrataStatus::SizeMismatch,
        StrataStatus::UnknownStream,
        StrataStatus::NoDriver,
        StrataStatus::NoDevice,
        StrataStatus::DriverError,
        StrataStatus::Unsupported,
        StrataStatus::IoError,
        StrataStatus::AlreadyInitialized,
        StrataStatus::Internal,
    ];

    /// The status's name as the header spells it, NUL-terminated.
    pub fn name(self) -> &'static CStr {
        match self {
            StrataStatus::Ok => c"STRATA_STATUS_OK",
            StrataStatus::OutOfMemory => c"STRATA_STATUS_OUT_OF_MEMORY",
            StrataStatus::InvalidArgument => c"STRATA_STATUS_INVALID_ARGUMENT",
            StrataStatus::UnknownHandle => c"STRATA_STATUS_UNKNOWN_HANDLE",
            StrataStatus::DoubleFree => c"STRATA_STATUS_DOUBLE_FREE",
            StrataStatus::NotAllocated => c"STRATA_STATUS_NOT_ALLOCATED",
            StrataStatus::SizeMismatch => c"STRATA_STATUS_SIZE_MISMATCH",
            StrataStatus::UnknownStream => c"STRATA_STATUS_UNKNOWN_STREAM",
            StrataStatus::NoDriver => c"STRATA_STATUS_NO_DRIVER",
            StrataStatus::NoDevice => c"STRATA_STATUS_NO_DEVICE",
            StrataStatus::DriverError => c"STRATA_STATUS_DRIVER_ERROR",
            StrataStatus::Unsupported => c"STRATA_STATUS_UNSUPPORTED",
            StrataStatus::IoError => c"STRATA_STATUS_IO_ERROR",
            StrataStatus::AlreadyInitialized => c"STRATA_STATUS_ALREADY_INITIALIZED",
            StrataStatus::Internal => c"STRATA_STATUS_INTERNAL",
        }
    }
}

/// A failed call: its status and the message left for `strata_last_error_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) status: StrataStatus,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: StrataStatus, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(StrataStatus::InvalidArgument, message)
    }

    /// The same failure, its message prefixed with `context: `.
    pub(crate) fn with_context(self, context: &str) -> Failure {
        Failure {
            status: self.status,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The status of a core error.
fn status_of(e: &Error) -> StrataStatus {
    match e {
        Error::ZeroSize | Error::InvalidAlignment { .. } | Error::SizeOverflow { .. } => {
            StrataStatus::InvalidArgument
        }
        Error::OutOfMemory { .. }
        | Error::LimitExceeded { .. }
        | Error::MetadataExhausted { .. }
        | Error::TooLarge { .. } => StrataStatus::OutOfMemory,
        Error::NotAllocated { .. } => StrataStatus::NotAllocated,
        Error::DoubleFree { .. } => StrataStatus::DoubleFree,
        Error::SizeMismatch { .. } => StrataStatus::SizeMismatch,
        Error::UnknownStream { .. } => StrataStatus::UnknownStream,
        Error::Backend { .. } => StrataStatus::DriverError,
        Error::Unsupported { .. } => StrataStatus::Unsupported,
        // `Error` is non-exhaustive: a variant added later is reported, not lost.
        _ => StrataStatus::Internal,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::new(status_of(&e), e.to_string())
    }
}

impl From<DriverError> for Failure {
    fn from(e: DriverError) -> Failure {
        let status = match &e {
            DriverError::NoDriver
            | DriverError::DriverTooOld { .. }
            | DriverError::MissingSymbol { .. } => StrataStatus::NoDriver,
            DriverError::NoDevice | DriverError::InvalidDevice { .. } => StrataStatus::NoDevice,
            DriverError::Call { .. } => StrataStatus::DriverError,
            DriverError::Core(core) => status_of(core),
            _ => status_of(&Error::from(e)),
        };
        Failure::new(status, e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::new(StrataStatus::IoError, e.to_string())
    }
}

thread_local! {
    /// The message of the last failed call on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Keeps `message` as the calling thread's last error (interior NULs become spaces). Never
/// panics: during thread teardown, when the thread-local is gone, the message is dropped.
pub(crate) fn set_last_error(message: &str) {
    let bytes: Vec<u8> = message
        .bytes()
        .map(|b| if b == 0 { b' ' } else { b })
        .collect();
    // No NUL is left, so `CString::new` succeeds; fall back to an empty string regardless.
    let text = CString::new(bytes).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = text;
        }
    });
}

/// A pointer to the calling thread's last error message (empty when no call failed yet). It
/// stays valid until the next failed call on this thread, or the thread's end.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| match slot.try_borrow() {
            Ok(s) => s.as_ptr(),
            Err(_) => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a panic without a message"
    }
}

/// Runs the body of an `extern "C"` function: a `Failure` becomes its status (and the thread's
/// last error message), a panic becomes [`StrataStatus::Internal`]; nothing unwinds out.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> StrataStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => StrataStatus::Ok,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            let message = format!(
                "internal error: strata panicked: {}",
                panic_message(&*payload)
            );
            set_last_error(&message);
            // Dropping a panic payload can itself panic; keep it from unwinding out.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            StrataStatus::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: `last_error_ptr` returns a NUL-terminated string owned by this thread's
        // slot, which no other call changes while we read it.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn guard_maps_failures_and_panics() {
        assert_eq!(guard(|| Ok(())), StrataStatus::Ok);
        assert_eq!(
            guard(|| Err(Error::DoubleFree { addr: 0x100 }.into())),
            StrataStatus::DoubleFree
        );
        assert_eq!(last_error(), "double free of 0x100");
        assert_eq!(
            guard(|| panic!("boom")),
            StrataStatus::Internal,
            "a panic is caught"
        );
        assert!(last_error().ends_with("boom"), "{}", last_error());
        set_last_error("with\0nul");
        assert_eq!(last_error(), "with nul");
    }

    #[test]
    fn every_core_and_driver_error_has_its_status() {
        let cases = [
            (Error::ZeroSize, StrataStatus::InvalidArgument),
            (
                Error::InvalidAlignment { align: 3 },
                StrataStatus::InvalidArgument,
            ),
            (
                Error::OutOfMemory {
                    requested: 1,
                    largest_free: 0,
                    total_free: 0,
                },
                StrataStatus::OutOfMemory,
            ),
            (
                Error::LimitExceeded {
                    requested: 1,
                    allocated: 0,
                    limit: 0,
                },
                StrataStatus::OutOfMemory,
            ),
            (Error::NotAllocated { addr: 1 }, StrataStatus::NotAllocated),
            (
                Error::SizeMismatch {
                    addr: 1,
                    allocated: 2,
                    given: 3,
                },
                StrataStatus::SizeMismatch,
            ),
            (
                Error::UnknownStream { stream: 9 },
                StrataStatus::UnknownStream,
            ),
            (
                Error::Backend {
                    call: "cuMemAlloc_v2",
                    code: 1,
                },
                StrataStatus::DriverError,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(Failure::from(e).status, status, "{e}");
        }
        assert_eq!(
            Failure::from(DriverError::NoDriver).status,
            StrataStatus::NoDriver
        );
        assert_eq!(
            Failure::from(DriverError::InvalidDevice {
                ordinal: 3,
                count: 1
            })
            .status,
            StrataStatus::NoDevice
        );
        assert_eq!(
            Failure::from(DriverError::Core(Error::ZeroSize)).status,
            StrataStatus::InvalidArgument
        );
    }

    #[test]
    fn names_follow_the_numbers() {
        for (i, s) in StrataStatus::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert!(s.name().to_str().unwrap().starts_with("STRATA_STATUS_"));
        }
    }
}
