//! Proof that `strata-core` builds without `std`: this crate is `#![no_std]` and defines its own
//! `#[panic_handler]`. If anything in its dependency graph linked `std`, the build would fail
//! with a duplicate `panic_impl` lang item.
#![no_std]

use strata_core::store::FixedSlots;
use strata_core::{Range, SimUpstream, Upstream};

/// Uses the core with no heap: a fixed metadata store and a simulated upstream.
pub fn exercise() -> Option<Range> {
    let _slots: FixedSlots<Range, 8> = FixedSlots::new();
    let mut sim = SimUpstream::<8>::with_slots(1 << 20);
    let r = sim.allocate(4096, 256).ok()?;
    sim.deallocate(r).ok()?;
    Some(r)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
