// tests/guide_snippets/per_device_default.rs
use std::sync::Arc;
use strata::MemoryResource;
use strata::driver::{Async, Device, DriverError, Stream, default_resource, set_default_resource};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::get(0)?;
    // At start-up, before any allocation:
    set_default_resource(&dev, Arc::new(Async::new(&dev)?))?;

    // Code far away, with no resource passed in:
    let mr = default_resource(&dev);
    let s = Stream::new(&dev)?;
    let p = mr.allocate(1 << 20, 256, s.key())?;
    mr.deallocate(p, 1 << 20, 256, s.key())?;

    // Too late to change it.
    let again = set_default_resource(&dev, Arc::new(Async::new(&dev)?));
    assert!(matches!(
        again,
        Err(DriverError::DefaultAlreadySet { ordinal: 0 })
    ));
    Ok(())
}
