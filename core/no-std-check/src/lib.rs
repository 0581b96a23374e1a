//! Proof that `strata-core` builds without `std` (and without `alloc`): this crate is `#![no_std]`
//! and defines its own `#[panic_handler]`. If anything in its dependency graph linked `std`, the
//! build would fail with a duplicate `panic_impl` lang item (E0152).
//!
//! It also uses the core the way a heap-free program would: a fixed-capacity TLSF list in a
//! `static`, behind the core's own lock, and a pool with fixed metadata over a simulated upstream.
#![no_std]

use strata_core::algo::{CoalescingList, Pool, PoolConfig};
use strata_core::sync::Mutex;
use strata_core::{Range, SimUpstream, Upstream};

/// A heap-free allocator in a `static`: 64 metadata nodes, 1 partition, no heap anywhere.
static LIST: Mutex<CoalescingList<64, 1>> = Mutex::new(CoalescingList::with_fixed_capacity());

/// Uses the core with no heap: a static TLSF list, a fixed-metadata pool and a simulated upstream.
pub fn exercise() -> Option<Range> {
    let mut sim = SimUpstream::<8>::with_slots(1 << 20);
    let chunk = sim.allocate(1 << 16, 256).ok()?;
    let block = {
        let mut list = LIST.lock();
        list.add_chunk(chunk).ok()?;
        let block = list.allocate(4096, 256).ok()?;
        list.deallocate(block.start, block.len).ok()?;
        list.take_free_chunk()?;
        block
    };
    sim.deallocate(chunk).ok()?;

    let list: CoalescingList<32, 1> = CoalescingList::with_fixed_capacity();
    let mut pool = Pool::with_list(&mut sim, list, PoolConfig::new(1 << 16)).ok()?;
    let r = pool.allocate(1000, 256).ok()?;
    pool.deallocate(r.start, r.len).ok()?;
    Some(block)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
