//! The synchronisation shim: the one place where strata chooses its lock and atomics.
//!
//! Normally these are a spin lock ([`spin::Mutex`]) and `core`'s atomics, so the resources work
//! with no operating system. Built with `RUSTFLAGS="--cfg loom"`, they are loom's types, so the
//! very same resource code is what the models in `loom-tests/` check. (A `spin::Mutex` is not
//! used under loom: loom cannot see its atomics and would hang in a spin.)
//!
//! ```
//! use strata_core::sync::{Mutex, AtomicU64, Ordering};
//! let m = Mutex::new(1u32);
//! *m.lock() += 1;
//! assert_eq!(*m.lock(), 2);
//! let a = AtomicU64::new(0);
//! a.fetch_add(3, Ordering::Relaxed);
//! assert_eq!(a.load(Ordering::Relaxed), 3);
//! ```

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A mutual-exclusion lock: `spin::Mutex` normally, `loom::sync::Mutex` under loom.
///
/// ```
/// let m = strata_core::sync::Mutex::new(Vec::<u8>::new());
/// m.lock().push(1);
/// assert_eq!(m.lock().len(), 1);
/// ```
#[derive(Debug, Default)]
pub struct Mutex<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// The guard of a locked [`Mutex`].
#[cfg(not(loom))]
pub type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
/// The guard of a locked [`Mutex`].
#[cfg(loom)]
pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// A new unlocked mutex (a `const fn` except under loom).
    ///
    /// ```
    /// static COUNTER: strata_core::sync::Mutex<u64> = strata_core::sync::Mutex::new(0);
    /// *COUNTER.lock() += 1;
    /// ```
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    /// A new unlocked mutex.
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        Self {
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Locks, spinning (or, under loom, yielding to the model) until the lock is free.
    ///
    /// ```
    /// let m = strata_core::sync::Mutex::new(0);
    /// *m.lock() = 5;
    /// assert_eq!(*m.lock(), 5);
    /// ```
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            // loom's mutex is only poisoned if a model thread panicked, which already fails
            // the model.
            self.inner.lock().expect("loom mutex poisoned")
        }
    }

    /// Locks if the lock is free now.
    ///
    /// ```
    /// let m = strata_core::sync::Mutex::new(0);
    /// let g = m.lock();
    /// assert!(m.try_lock().is_none());
    /// drop(g);
    /// assert!(m.try_lock().is_some());
    /// ```
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        #[cfg(not(loom))]
        {
            self.inner.try_lock()
        }
        #[cfg(loom)]
        {
            self.inner.try_lock().ok()
        }
    }

    /// Consumes the mutex and returns its value.
    ///
    /// ```
    /// assert_eq!(strata_core::sync::Mutex::new(3).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        #[cfg(not(loom))]
        {
            self.inner.into_inner()
        }
        #[cfg(loom)]
        {
            self.inner.into_inner().expect("loom mutex poisoned")
        }
    }
}
