//! The failure-retry adaptor: a callback decides whether to retry after out of memory.

use crate::{Error, MemoryResource, StreamKey};

/// Whether `e` says the memory ran out (as opposed to a bad request or a backend failure).
fn is_out_of_memory(e: &Error) -> bool {
    matches!(e, Error::OutOfMemory { .. } | Error::LimitExceeded { .. })
}

/// After an allocation fails for want of memory ([`Error::OutOfMemory`] or
/// [`Error::LimitExceeded`]), asks a callback whether to try again.
///
/// The callback gets the error and the number of the attempt that failed (1 for the first) and
/// returns `true` to retry, typically after freeing something (a cache, a pool's free blocks) or
/// waiting for other work to finish. When it returns `false`, the last error is returned
/// unchanged. Other errors, and every free, pass through untouched. This is RMM's
/// `failure_callback_resource_adaptor`.
///
/// ```
/// use strata_core::adaptors::{FailureRetry, Limiting, ThreadSafe};
/// use strata_core::{Error, MemoryResource, SimUpstream, StreamKey};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// let calls = AtomicU32::new(0);
/// let limited = Limiting::new(ThreadSafe::new(SimUpstream::new(1 << 20)), 1024);
/// let r = FailureRetry::new(&limited, |_e: &Error, attempt: u32| {
///     calls.fetch_add(1, Ordering::Relaxed);
///     attempt < 3 // give up after the third failure
/// });
/// assert!(matches!(r.allocate(4096, 256, StreamKey::DEFAULT), Err(Error::LimitExceeded { .. })));
/// assert_eq!(calls.load(Ordering::Relaxed), 3);
/// ```
#[derive(Debug)]
pub struct FailureRetry<R, F> {
    upstream: R,
    callback: F,
}

impl<R, F> FailureRetry<R, F>
where
    F: Fn(&Error, u32) -> bool + Send + Sync,
{
    /// Wraps `upstream`; `callback(error, attempt)` decides whether to retry.
    ///
    /// ```
    /// use strata_core::adaptors::{FailureRetry, ThreadSafe};
    /// use strata_core::{Error, MemoryResource, SimUpstream, StreamKey};
    /// let r = FailureRetry::new(ThreadSafe::new(SimUpstream::new(1 << 20)), |_: &Error, _| false);
    /// assert!(r.allocate(256, 256, StreamKey::DEFAULT).is_ok());
    /// ```
    pub fn new(upstream: R, callback: F) -> Self {
        Self { upstream, callback }
    }
}

impl<R, F> FailureRetry<R, F> {
    /// The wrapped resource.
    ///
    /// ```
    /// use strata_core::adaptors::{FailureRetry, ThreadSafe};
    /// use strata_core::{Error, SimUpstream};
    /// let r = FailureRetry::new(ThreadSafe::new(SimUpstream::new(1024)), |_: &Error, _| false);
    /// assert_eq!(r.upstream().lock().capacity(), 1024);
    /// ```
    pub fn upstream(&self) -> &R {
        &self.upstream
    }
}

impl<R, F> MemoryResource for FailureRetry<R, F>
where
    R: MemoryResource,
    F: Fn(&Error, u32) -> bool + Send + Sync,
{
    fn allocate(&self, size: u64, align: u64, stream: StreamKey) -> Result<u64, Error> {
        let mut attempt: u32 = 1;
        loop {
            match self.upstream.allocate(size, align, stream) {
                Err(e) if is_out_of_memory(&e) && (self.callback)(&e, attempt) => {
                    attempt = attempt.saturating_add(1);
                }
                other => return other,
            }
        }
    }

    #[inline]
    fn deallocate(&self, addr: u64, size: u64, align: u64, stream: StreamKey) -> Result<(), Error> {
        self.upstream.deallocate(addr, size, align, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimUpstream;
    use crate::adaptors::ThreadSafe;
    use crate::sync::{AtomicU32, Ordering};

    const S: StreamKey = StreamKey::DEFAULT;

    #[test]
    fn retries_succeed_once_memory_is_freed() {
        let inner = ThreadSafe::new(SimUpstream::<8>::with_slots(1024));
        let hog = inner.allocate(1024, 256, S).unwrap();
        let freed = AtomicU32::new(0);
        let r = FailureRetry::new(&inner, |e: &Error, attempt| {
            assert!(matches!(e, Error::OutOfMemory { requested: 512, .. }));
            assert_eq!(attempt, 1);
            // Make room, once.
            inner.deallocate(hog, 1024, 256, S).unwrap();
            freed.fetch_add(1, Ordering::Relaxed);
            true
        });
        let a = r.allocate(512, 256, S).unwrap();
        assert_eq!(freed.load(Ordering::Relaxed), 1);
        r.deallocate(a, 512, 256, S).unwrap();
    }

    #[test]
    fn other_errors_never_reach_the_callback() {
        let r = FailureRetry::new(
            ThreadSafe::new(SimUpstream::<8>::with_slots(1024)),
            |_: &Error, _| panic!("callback called for a bad request"),
        );
        assert_eq!(r.allocate(0, 256, S), Err(Error::ZeroSize));
        assert_eq!(
            r.allocate(1, 5, S),
            Err(Error::InvalidAlignment { align: 5 })
        );
        assert_eq!(
            r.deallocate(0x1000, 1, 256, S),
            Err(Error::NotAllocated { addr: 0x1000 })
        );
    }

    #[test]
    fn giving_up_returns_the_error_unchanged() {
        let inner = ThreadSafe::new(SimUpstream::<8>::with_slots(1024));
        let direct = inner.allocate(2048, 256, S).unwrap_err();
        let r = FailureRetry::new(&inner, |_: &Error, _| false);
        assert_eq!(r.allocate(2048, 256, S), Err(direct));
    }
}
