// tests/guide_snippets/managed_prefetch_advise.rs
use strata::MemoryResource;
use strata::driver::{Advice, Device, Location, Managed, Stream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::get(0)?;
    let gpu = Location::Device(dev.ordinal());
    let mr = Managed::new(&dev);
    let s = Stream::new(&dev)?;
    let n: u64 = 64 << 20;
    let p = mr.allocate(n, 256, s.key())?;

    // SAFETY: `p` is n live bytes of managed memory, ours alone, and no device work uses
    // them yet; the slice is not used after the free below.
    let host = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n as usize) };
    host.fill(1); // the host writes managed memory directly

    mr.advise(p, n, Advice::PreferredLocation(gpu))?; // keep the pages on the device
    mr.prefetch(p, n, gpu, &s)?; // on the device before later work on s
    // ... enqueue work on s that uses p ...
    mr.prefetch(p, n, Location::Host, &s)?; // back to the host, in s's order
    s.synchronize()?; // the host waits for s before it reads
    assert!(host.iter().all(|&b| b == 1));

    mr.deallocate(p, n, 256, s.key())?;
    Ok(())
}
