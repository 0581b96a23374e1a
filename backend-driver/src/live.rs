//! Books of live allocations, so that a bad free is an error instead of a driver fault, and
//! over-aligned allocations remember where they really start.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_core::{DEFAULT_ALIGNMENT, Error, align_up, check_alignment};

/// One live allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The size the caller asked for (what the free must name).
    pub size: u64,
    /// The address the driver returned (below the handed-out address when over-aligned).
    pub base: u64,
}

const SHARDS: usize = 16;

/// Live allocations by handed-out address, in shards to keep threads apart.
///
/// Invariants: each address is in at most one shard (the one [`shard`] names); `bytes` and
/// `count` are the sums over all shards of the entries' sizes and of the entries.
#[derive(Debug)]
pub(crate) struct LiveSet {
    shards: [Mutex<HashMap<u64, Entry>>; SHARDS],
    bytes: AtomicU64,
    count: AtomicU64,
}

fn shard(addr: u64) -> usize {
    // Addresses are at least 256-aligned: mix the bits above that.
    let x = (addr >> 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 60) as usize % SHARDS
}

impl LiveSet {
    pub(crate) fn new() -> Self {
        LiveSet {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            bytes: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn lock(&self, addr: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.shards[shard(addr)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, addr: u64, entry: Entry) {
        self.lock(addr).insert(addr, entry);
        self.bytes.fetch_add(entry.size, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes the allocation at `addr` of `size` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::NotAllocated`] or [`Error::SizeMismatch`]; nothing changes then.
    pub(crate) fn remove(&self, addr: u64, size: u64) -> Result<Entry, Error> {
        let mut map = self.lock(addr);
        match map.get(&addr) {
            None => Err(Error::NotAllocated { addr }),
            Some(e) if e.size != size => Err(Error::SizeMismatch {
                addr,
                allocated: e.size,
                given: size,
            }),
            Some(_) => {
                let e = map.remove(&addr).ok_or(Error::NotAllocated { addr })?;
                drop(map);
                self.bytes.fetch_sub(e.size, Ordering::Relaxed);
                self.count.fetch_sub(1, Ordering::Relaxed);
                Ok(e)
            }
        }
    }

    /// Takes every live allocation out.
    pub(crate) fn drain(&self) -> Vec<(u64, Entry)> {
        let mut all = Vec::new();
        for s in &self.shards {
            all.extend(s.lock().unwrap_or_else(|p| p.into_inner()).drain());
        }
        self.bytes.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
        all
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Validates a request and allocates it through `raw` (which returns memory aligned to
/// [`DEFAULT_ALIGNMENT`], like every CUDA allocator): alignments up to 256 are served as they
/// are, larger ones by over-allocating `align - 256` bytes. Returns `(address, entry)`.
///
/// # Errors
///
/// [`Error::ZeroSize`], [`Error::InvalidAlignment`], [`Error::SizeOverflow`], or what `raw`
/// returns.
pub(crate) fn allocate_aligned(
    size: u64,
    align: u64,
    raw: impl FnOnce(usize) -> Result<u64, Error>,
) -> Result<(u64, Entry), Error> {
    if size == 0 {
        return Err(Error::ZeroSize);
    }
    check_alignment(align)?;
    let extra = align.saturating_sub(DEFAULT_ALIGNMENT);
    let total = size
        .checked_add(extra)
        .and_then(|t| usize::try_from(t).ok())
        .ok_or(Error::SizeOverflow { requested: size })?;
    let base = raw(total)?;
    let addr = align_up(base, align.max(DEFAULT_ALIGNMENT)).unwrap_or(base);
    Ok((addr, Entry { size, base }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_frees_change_nothing() {
        let live = LiveSet::new();
        live.insert(
            0x1000,
            Entry {
                size: 64,
                base: 0x1000,
            },
        );
        assert_eq!(
            live.remove(0x2000, 64),
            Err(Error::NotAllocated { addr: 0x2000 })
        );
        assert_eq!(
            live.remove(0x1000, 32),
            Err(Error::SizeMismatch {
                addr: 0x1000,
                allocated: 64,
                given: 32
            })
        );
        assert_eq!((live.bytes(), live.count()), (64, 1));
        assert_eq!(live.remove(0x1000, 64).unwrap().base, 0x1000);
        assert_eq!(
            live.remove(0x1000, 64),
            Err(Error::NotAllocated { addr: 0x1000 })
        );
        assert_eq!((live.bytes(), live.count()), (0, 0));
    }

    #[test]
    fn many_addresses_spread_and_drain() {
        let live = LiveSet::new();
        for i in 0..1000u64 {
            live.insert(
                i << 8,
                Entry {
                    size: 256,
                    base: i << 8,
                },
            );
        }
        let used = live
            .shards
            .iter()
            .filter(|s| !s.lock().unwrap().is_empty())
            .count();
        assert!(used > SHARDS / 2, "only {used} shards used");
        assert_eq!(live.bytes(), 256_000);
        assert_eq!(live.drain().len(), 1000);
        assert_eq!(live.count(), 0);
    }

    #[test]
    fn alignment_is_validated_and_honoured() {
        let fake = |_: usize| Ok(0x10_0100); // 256-aligned, not 4 KiB-aligned
        assert_eq!(allocate_aligned(0, 256, fake), Err(Error::ZeroSize));
        assert_eq!(
            allocate_aligned(1, 3, fake),
            Err(Error::InvalidAlignment { align: 3 })
        );
        assert_eq!(
            allocate_aligned(u64::MAX, 4096, fake),
            Err(Error::SizeOverflow {
                requested: u64::MAX
            })
        );
        let (a, e) = allocate_aligned(100, 64, fake).unwrap();
        assert_eq!((a, e.base, e.size), (0x10_0100, 0x10_0100, 100));
        let mut asked = 0;
        let (a, e) = allocate_aligned(100, 4096, |n| {
            asked = n;
            Ok(0x10_0100)
        })
        .unwrap();
        assert_eq!(asked, 100 + 4096 - 256);
        assert_eq!(a % 4096, 0);
        assert!(a >= e.base && a + 100 <= e.base + asked as u64);
    }
}
