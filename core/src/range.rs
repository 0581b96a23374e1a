//! Address ranges and alignment arithmetic.

use core::fmt;

use crate::Error;

/// The smallest alignment strata hands out, as CUDA and RMM do (256 bytes).
///
/// ```
/// assert_eq!(strata_core::DEFAULT_ALIGNMENT, 256);
/// ```
pub const DEFAULT_ALIGNMENT: u64 = 256;

/// A half-open range of abstract addresses, `start .. start + len`.
///
/// Invariant: `start + len` does not overflow `u64` for any range strata creates.
///
/// ```
/// use strata_core::Range;
/// let r = Range::new(0x1000, 0x100);
/// assert_eq!(r.end(), 0x1100);
/// assert!(r.contains(0x10ff));
/// assert!(!r.contains(0x1100));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Range {
    /// First address of the range.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Range {
    /// Makes a range from its start and length.
    ///
    /// ```
    /// let r = strata_core::Range::new(256, 512);
    /// assert_eq!((r.start, r.len), (256, 512));
    /// ```
    #[inline]
    pub const fn new(start: u64, len: u64) -> Self {
        Self { start, len }
    }

    /// One past the last address.
    ///
    /// ```
    /// assert_eq!(strata_core::Range::new(10, 5).end(), 15);
    /// ```
    #[inline]
    pub const fn end(&self) -> u64 {
        self.start + self.len
    }

    /// Whether `addr` lies inside the range.
    ///
    /// ```
    /// let r = strata_core::Range::new(10, 5);
    /// assert!(r.contains(10) && r.contains(14) && !r.contains(15));
    /// ```
    #[inline]
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr - self.start < self.len
    }

    /// Whether the two ranges share at least one address.
    ///
    /// ```
    /// use strata_core::Range;
    /// assert!(Range::new(0, 10).overlaps(&Range::new(9, 1)));
    /// assert!(!Range::new(0, 10).overlaps(&Range::new(10, 1)));
    /// ```
    #[inline]
    pub const fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end() && other.start < self.end()
    }

    /// Whether `other` starts exactly where `self` ends.
    ///
    /// ```
    /// use strata_core::Range;
    /// assert!(Range::new(0, 10).is_followed_by(&Range::new(10, 4)));
    /// ```
    #[inline]
    pub const fn is_followed_by(&self, other: &Range) -> bool {
        self.end() == other.start
    }
}

impl fmt::Debug for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x} ({} B)", self.start, self.end(), self.len)
    }
}

/// Checks that `align` is a non-zero power of two.
///
/// # Errors
///
/// [`Error::InvalidAlignment`] when it is not.
///
/// ```
/// use strata_core::{check_alignment, Error};
/// assert!(check_alignment(256).is_ok());
/// assert_eq!(check_alignment(384), Err(Error::InvalidAlignment { align: 384 }));
/// ```
#[inline]
pub const fn check_alignment(align: u64) -> Result<(), Error> {
    if align.is_power_of_two() {
        Ok(())
    } else {
        Err(Error::InvalidAlignment { align })
    }
}

/// Rounds `value` up to a multiple of `align` (a power of two), or `None` on overflow.
///
/// ```
/// assert_eq!(strata_core::align_up(300, 256), Some(512));
/// assert_eq!(strata_core::align_up(512, 256), Some(512));
/// assert_eq!(strata_core::align_up(u64::MAX, 256), None);
/// ```
#[inline]
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    let mask = align - 1;
    match value.checked_add(mask) {
        Some(v) => Some(v & !mask),
        None => None,
    }
}

/// Rounds `value` down to a multiple of `align` (a power of two).
///
/// ```
/// assert_eq!(strata_core::align_down(300, 256), 256);
/// ```
#[inline]
pub const fn align_down(value: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    value & !(align - 1)
}
