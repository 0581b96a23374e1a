// tests/guide_snippets/async_pool_facts.rs
use strata::MemoryResource;
use strata::driver::{Async, AsyncOptions, AsyncView, Device, Stream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::get(0)?;
    let mr = Async::new(&dev)?;
    // A pool of its own, not the device's default pool.
    assert_ne!(mr.raw(), AsyncView::default_pool(&dev)?.raw());
    // It keeps what it reserved after the memory is freed and the stream is idle...
    assert_eq!(mr.release_threshold()?, u64::MAX);
    let s = Stream::new(&dev)?;
    let p = mr.allocate(64 << 20, 256, s.key())?;
    mr.deallocate(p, 64 << 20, 256, s.key())?;
    s.synchronize()?;
    assert!(mr.reserved_current()? >= 64 << 20);
    // ...until asked to give it back.
    mr.trim_to(0)?;
    assert_eq!(mr.reserved_current()?, 0);

    let primed = Async::with_options(
        &dev,
        AsyncOptions {
            initial_pool_size: Some(64 << 20), // one allocation of 64 MiB, freed at once
            max_pool_size: Some(1 << 30),      // never more than 1 GiB reserved
            ..AsyncOptions::default()
        },
    )?;
    assert!(primed.reserved_current()? >= 64 << 20); // primed, and kept
    primed.set_release_threshold(0)?; // from now on, unused memory goes back at each sync
    assert_eq!(primed.release_threshold()?, 0);
    Ok(())
}
