//! The allocation algorithms: single-threaded structs with `&mut self` methods over
//! [`Range`](crate::Range)s. They never touch the memory they manage and allocate nothing
//! beyond their metadata store. The thread-safe resources at the crate root wrap them.

mod tlsf;
pub use tlsf::{CoalescingList, PartitionId};
