// tests/guide_snippets/cross_stream_rules.rs
use strata::MemoryResource;
use strata::algo::PoolConfig;
use strata::driver::{Device, DeviceMemory, Stream, stream_ordered_pool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::get(0)?;
    let mr = stream_ordered_pool(DeviceMemory::new(&dev), &dev, PoolConfig::new(64 << 20))?;
    let (s1, s2) = (Stream::new(&dev)?, Stream::new(&dev)?);

    // Rule 1: usable at once by work enqueued from now on on s1.
    let p = mr.allocate(1 << 20, 256, s1.key())?;
    // ... enqueue work on s1 that writes p ...

    // Rule 2: before s2 uses p, s2 waits for s1's work so far (an event, no host wait).
    s2.wait_for(&s1)?;
    // ... enqueue work on s2 that reads p ...

    // Rule 3: the last use was on s2. Free on s2, or order s1 after s2 and free on s1.
    s1.wait_for(&s2)?;
    mr.deallocate(p, 1 << 20, 256, s1.key())?;

    // s1 may reuse the block at once. s2 takes it only after one event, made by the pool.
    let q = mr.allocate(1 << 20, 256, s2.key())?;
    assert_eq!(mr.stats().steals, 1);
    assert_eq!(mr.order().orders(), 1);
    mr.deallocate(q, 1 << 20, 256, s2.key())?;
    Ok(())
}
