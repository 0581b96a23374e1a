//! The one error type of the core.

use core::fmt;

/// Everything that can go wrong in a strata allocation call.
///
/// Every variant is the answer to a bad call or an exhausted resource; a call that returns an
/// error has changed no state.
///
/// ```
/// use strata_core::Error;
/// let e = Error::OutOfMemory { requested: 4096, largest_free: 1024, total_free: 2048 };
/// assert_eq!(
///     e.to_string(),
///     "out of memory: requested 4096 B, largest free block 1024 B, total free 2048 B"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A request for zero bytes. strata never hands out empty blocks.
    ZeroSize,
    /// The alignment is not a power of two (or is larger than the resource supports).
    InvalidAlignment {
        /// The alignment asked for.
        align: u64,
    },
    /// A size so large that rounding it overflows the address space.
    SizeOverflow {
        /// The size asked for.
        requested: u64,
    },
    /// No free block can serve the request, and the upstream could not grow.
    OutOfMemory {
        /// Bytes asked for.
        requested: u64,
        /// The largest free block the resource holds (0 when unknown).
        largest_free: u64,
        /// All free bytes the resource holds (for a device: the device's free memory).
        total_free: u64,
    },
    /// A byte budget (the limiting adaptor) would be exceeded.
    LimitExceeded {
        /// Bytes asked for.
        requested: u64,
        /// Bytes already allocated under the budget.
        allocated: u64,
        /// The budget.
        limit: u64,
    },
    /// A free of an address this resource never handed out (or already took back and merged).
    NotAllocated {
        /// The address given.
        addr: u64,
    },
    /// A free of a block that is already free.
    DoubleFree {
        /// The address given.
        addr: u64,
    },
    /// A free whose size does not match the allocation at that address.
    SizeMismatch {
        /// The address given.
        addr: u64,
        /// The size it was allocated with.
        allocated: u64,
        /// The size given to the free.
        given: u64,
    },
    /// The metadata store is full: a fixed-capacity store has no slot left.
    MetadataExhausted {
        /// The store's capacity, in slots.
        capacity: usize,
    },
    /// The request is larger than this resource ever serves (e.g. a fixed-size block).
    TooLarge {
        /// Bytes asked for.
        requested: u64,
        /// The largest request this resource serves.
        max: u64,
    },
    /// A stream key the resource does not know, or that was retired.
    UnknownStream {
        /// The stream key.
        stream: u64,
    },
    /// A driver (or other backend) call failed.
    Backend {
        /// The call that failed, e.g. `"cuMemAlloc_v2"`.
        call: &'static str,
        /// The backend's numeric code (a `CUresult` for the CUDA driver).
        code: u32,
    },
    /// The operation is not supported by this resource or device.
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::ZeroSize => f.write_str("zero-size allocation"),
            Error::InvalidAlignment { align } => {
                write!(f, "invalid alignment {align}: not a supported power of two")
            }
            Error::SizeOverflow { requested } => {
                write!(
                    f,
                    "size {requested} B overflows the address space when rounded"
                )
            }
            Error::OutOfMemory {
                requested,
                largest_free,
                total_free,
            } => write!(
                f,
                "out of memory: requested {requested} B, largest free block {largest_free} B, total free {total_free} B"
            ),
            Error::LimitExceeded {
                requested,
                allocated,
                limit,
            } => write!(
                f,
                "allocation limit exceeded: requested {requested} B with {allocated} B of {limit} B in use"
            ),
            Error::NotAllocated { addr } => {
                write!(
                    f,
                    "free of {addr:#x}, which was not allocated by this resource"
                )
            }
            Error::DoubleFree { addr } => write!(f, "double free of {addr:#x}"),
            Error::SizeMismatch {
                addr,
                allocated,
                given,
            } => write!(
                f,
                "free of {addr:#x} with size {given} B, but it was allocated with {allocated} B"
            ),
            Error::MetadataExhausted { capacity } => {
                write!(f, "metadata store full ({capacity} slots)")
            }
            Error::TooLarge { requested, max } => {
                write!(
                    f,
                    "request of {requested} B exceeds this resource's maximum of {max} B"
                )
            }
            Error::UnknownStream { stream } => write!(f, "unknown stream {stream:#x}"),
            Error::Backend { call, code } => write!(f, "{call} failed with code {code}"),
            Error::Unsupported { what } => write!(f, "unsupported: {what}"),
        }
    }
}

impl core::error::Error for Error {}
