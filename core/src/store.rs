//! Metadata storage for the algorithms: a slab of slots addressed by [`SlotId`].
//!
//! Two stores implement [`SlotStore`]:
//!
//! - [`FixedSlots<T, N>`]: `N` slots inline (no heap at all; `const fn new`, so it can live in a
//!   `static`). When every slot is taken, [`SlotStore::insert`] returns
//!   [`Error::MetadataExhausted`]; nothing panics and nothing is lost.
//! - [`VecSlots<T>`] (feature `alloc`): grows on the heap as needed.
//!
//! Both keep vacant slots on an intrusive free list, so insert and remove are O(1).
//!
//! ```
//! use strata_core::store::{FixedSlots, SlotStore};
//! let mut s: FixedSlots<u64, 2> = FixedSlots::new();
//! let a = s.insert(7)?;
//! let b = s.insert(8)?;
//! assert!(s.insert(9).is_err());
//! assert_eq!(s.remove(a), 7);
//! let c = s.insert(9)?;
//! assert_eq!(*s.get(b), 8);
//! assert_eq!(*s.get(c), 9);
//! # Ok::<(), strata_core::Error>(())
//! ```

use crate::Error;

/// The index of a slot in a [`SlotStore`].
pub type SlotId = u32;

/// Sentinel meaning "no slot" in intrusive links.
pub const NO_SLOT: SlotId = SlotId::MAX;

/// One slot: a value, or a link in the list of vacant slots.
#[derive(Debug, Clone)]
enum Slot<T> {
    Occupied(T),
    Vacant { next_vacant: SlotId },
}

/// A slab of metadata slots.
///
/// Invariant of every implementation: a [`SlotId`] returned by `insert` stays valid, and keeps
/// its value, until it is passed to `remove`. `get`, `get_mut` and `remove` on an id that is not
/// occupied is a bug in the caller (the algorithms never do it); it panics rather than return
/// someone else's data.
pub trait SlotStore<T> {
    /// Stores `value` and returns its slot.
    ///
    /// # Errors
    ///
    /// [`Error::MetadataExhausted`] when a fixed-capacity store is full.
    fn insert(&mut self, value: T) -> Result<SlotId, Error>;
    /// Takes the value out of `id` and frees the slot.
    ///
    /// # Panics
    ///
    /// If `id` is not occupied (a caller bug).
    fn remove(&mut self, id: SlotId) -> T;
    /// The value in slot `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not occupied (a caller bug).
    fn get(&self, id: SlotId) -> &T;
    /// The value in slot `id`, mutably.
    ///
    /// # Panics
    ///
    /// If `id` is not occupied (a caller bug).
    fn get_mut(&mut self, id: SlotId) -> &mut T;
    /// How many slots are occupied.
    fn len(&self) -> usize;
    /// Whether no slot is occupied.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The most slots this store can ever hold (`None`: limited only by the heap).
    fn capacity(&self) -> Option<usize>;
}

/// The free-list logic shared by both stores, over any slice-like backing.
macro_rules! slab_methods {
    () => {
        fn remove(&mut self, id: SlotId) -> T {
            let slot = &mut self.slots[id as usize];
            let old = core::mem::replace(
                slot,
                Slot::Vacant {
                    next_vacant: self.first_vacant,
                },
            );
            match old {
                Slot::Occupied(v) => {
                    self.first_vacant = id;
                    self.len -= 1;
                    v
                }
                Slot::Vacant { .. } => panic!("strata store: remove of vacant slot {id}"),
            }
        }

        #[inline]
        fn get(&self, id: SlotId) -> &T {
            match &self.slots[id as usize] {
                Slot::Occupied(v) => v,
                Slot::Vacant { .. } => panic!("strata store: read of vacant slot {id}"),
            }
        }

        #[inline]
        fn get_mut(&mut self, id: SlotId) -> &mut T {
            match &mut self.slots[id as usize] {
                Slot::Occupied(v) => v,
                Slot::Vacant { .. } => panic!("strata store: write of vacant slot {id}"),
            }
        }

        #[inline]
        fn len(&self) -> usize {
            self.len
        }
    };
}

/// A fixed-capacity store of `N` slots, with no heap.
///
/// ```
/// use strata_core::store::{FixedSlots, SlotStore};
/// // `new` is a `const fn`: a store can be built at compile time.
/// const EMPTY: FixedSlots<[u64; 2], 16> = FixedSlots::new();
/// let s = EMPTY;
/// assert_eq!(s.capacity(), Some(16));
/// ```
#[derive(Debug)]
pub struct FixedSlots<T, const N: usize> {
    slots: heapless::Vec<Slot<T>, N>,
    /// Head of the vacant list (slots below `slots.len()` that are `Vacant`), or [`NO_SLOT`].
    first_vacant: SlotId,
    len: usize,
}

impl<T, const N: usize> FixedSlots<T, N> {
    /// An empty store.
    ///
    /// ```
    /// use strata_core::store::{FixedSlots, SlotStore};
    /// let s: FixedSlots<u8, 4> = FixedSlots::new();
    /// assert!(s.is_empty());
    /// ```
    pub const fn new() -> Self {
        const { assert!(N < NO_SLOT as usize, "FixedSlots: N must be below u32::MAX") };
        Self {
            slots: heapless::Vec::new(),
            first_vacant: NO_SLOT,
            len: 0,
        }
    }
}

impl<T, const N: usize> Default for FixedSlots<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> SlotStore<T> for FixedSlots<T, N> {
    fn insert(&mut self, value: T) -> Result<SlotId, Error> {
        if self.first_vacant != NO_SLOT {
            let id = self.first_vacant;
            let slot = &mut self.slots[id as usize];
            let Slot::Vacant { next_vacant } = *slot else {
                unreachable!("strata store: vacant list points at an occupied slot")
            };
            *slot = Slot::Occupied(value);
            self.first_vacant = next_vacant;
            self.len += 1;
            return Ok(id);
        }
        let id = self.slots.len() as SlotId;
        self.slots
            .push(Slot::Occupied(value))
            .map_err(|_| Error::MetadataExhausted { capacity: N })?;
        self.len += 1;
        Ok(id)
    }

    fn capacity(&self) -> Option<usize> {
        Some(N)
    }

    slab_methods!();
}

/// A growable store on the heap (feature `alloc`).
///
/// ```
/// use strata_core::store::{VecSlots, SlotStore};
/// let mut s = VecSlots::new();
/// for i in 0..1000u32 { s.insert(i)?; }
/// assert_eq!(s.len(), 1000);
/// assert_eq!(s.capacity(), None);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[cfg(feature = "alloc")]
#[derive(Debug)]
pub struct VecSlots<T> {
    slots: alloc::vec::Vec<Slot<T>>,
    /// Head of the vacant list, or [`NO_SLOT`].
    first_vacant: SlotId,
    len: usize,
}

#[cfg(feature = "alloc")]
impl<T> VecSlots<T> {
    /// An empty store.
    ///
    /// ```
    /// let s = strata_core::store::VecSlots::<u8>::new();
    /// # use strata_core::store::SlotStore;
    /// assert!(s.is_empty());
    /// ```
    pub const fn new() -> Self {
        Self {
            slots: alloc::vec::Vec::new(),
            first_vacant: NO_SLOT,
            len: 0,
        }
    }

    /// An empty store with room for `n` slots before it reallocates.
    ///
    /// ```
    /// let s = strata_core::store::VecSlots::<u8>::with_capacity(64);
    /// # use strata_core::store::SlotStore;
    /// assert!(s.is_empty());
    /// ```
    pub fn with_capacity(n: usize) -> Self {
        Self {
            slots: alloc::vec::Vec::with_capacity(n),
            first_vacant: NO_SLOT,
            len: 0,
        }
    }
}

#[cfg(feature = "alloc")]
impl<T> Default for VecSlots<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "alloc")]
impl<T> SlotStore<T> for VecSlots<T> {
    fn insert(&mut self, value: T) -> Result<SlotId, Error> {
        if self.first_vacant != NO_SLOT {
            let id = self.first_vacant;
            let slot = &mut self.slots[id as usize];
            let Slot::Vacant { next_vacant } = *slot else {
                unreachable!("strata store: vacant list points at an occupied slot")
            };
            *slot = Slot::Occupied(value);
            self.first_vacant = next_vacant;
            self.len += 1;
            return Ok(id);
        }
        if self.slots.len() >= NO_SLOT as usize {
            return Err(Error::MetadataExhausted {
                capacity: NO_SLOT as usize,
            });
        }
        let id = self.slots.len() as SlotId;
        self.slots.push(Slot::Occupied(value));
        self.len += 1;
        Ok(id)
    }

    fn capacity(&self) -> Option<usize> {
        None
    }

    slab_methods!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_store_reuses_slots_and_reports_exhaustion() {
        let mut s: FixedSlots<u32, 3> = FixedSlots::new();
        let ids: [SlotId; 3] = [
            s.insert(1).unwrap(),
            s.insert(2).unwrap(),
            s.insert(3).unwrap(),
        ];
        assert_eq!(s.insert(4), Err(Error::MetadataExhausted { capacity: 3 }));
        assert_eq!(s.remove(ids[1]), 2);
        assert_eq!(s.len(), 2);
        let again = s.insert(5).unwrap();
        assert_eq!(again, ids[1]);
        assert_eq!(*s.get(ids[0]), 1);
        assert_eq!(*s.get(again), 5);
        *s.get_mut(ids[2]) = 30;
        assert_eq!(s.remove(ids[2]), 30);
    }

    #[test]
    #[should_panic(expected = "vacant slot")]
    fn removing_a_vacant_slot_is_a_caller_bug() {
        let mut s: FixedSlots<u32, 3> = FixedSlots::new();
        let a = s.insert(1).unwrap();
        s.remove(a);
        s.remove(a);
    }

    #[test]
    fn vec_store_grows() {
        let mut s = VecSlots::new();
        let ids: alloc::vec::Vec<_> = (0..100u64).map(|i| s.insert(i).unwrap()).collect();
        for (i, id) in ids.iter().enumerate().step_by(2) {
            assert_eq!(s.remove(*id), i as u64);
        }
        assert_eq!(s.len(), 50);
        for i in 0..50u64 {
            s.insert(1000 + i).unwrap();
        }
        assert_eq!(s.len(), 100);
    }
}
