// tests/guide_snippets/several_devices.rs
use strata::driver::{Async, Device, DeviceVec, Stream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices = Device::all()?;
    let resources = devices
        .iter()
        .map(Async::new)
        .collect::<Result<Vec<_>, _>>()?;
    let streams = devices
        .iter()
        .map(Stream::new)
        .collect::<Result<Vec<_>, _>>()?;

    // One thread, every device, interleaved.
    let mut vecs = Vec::new();
    for ((dev, mr), s) in devices.iter().zip(&resources).zip(&streams) {
        vecs.push(DeviceVec::from_slice(&[dev.ordinal() as u32; 1024], s, mr)?);
    }
    for (dev, v) in devices.iter().zip(&vecs) {
        assert_eq!(v.get(1023)?, dev.ordinal() as u32);
    }
    Ok(())
}
