//! Per-device default resources, for convenience. Passing resources explicitly is preferred.

use std::sync::{Arc, Mutex};

use strata_core::MemoryResource;

use crate::device::Device;
use crate::error::DriverError;
use crate::memory::DeviceMemory;

/// The default resource of each device, by ordinal; `None` until set or first read. Once an
/// entry is `Some` it never changes (set once, before any use).
static DEFAULTS: Mutex<Vec<Option<Arc<dyn MemoryResource>>>> = Mutex::new(Vec::new());

/// The default resource of `device`. If none was set, it becomes a [`DeviceMemory`] of the
/// device (RMM's initial per-device resource), and can no longer be set.
///
/// ```no_run
/// use strata_core::{MemoryResource, StreamKey};
/// let dev = strata_driver::Device::get(0)?;
/// let mr = strata_driver::default_resource(&dev);
/// let p = mr.allocate(256, 256, StreamKey::DEFAULT)?;
/// mr.deallocate(p, 256, 256, StreamKey::DEFAULT)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn default_resource(device: &Device) -> Arc<dyn MemoryResource> {
    let mut all = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    let i = device.ordinal();
    if all.len() <= i {
        all.resize(i + 1, None);
    }
    all[i]
        .get_or_insert_with(|| Arc::new(DeviceMemory::new(device)))
        .clone()
}

/// Sets the default resource of `device`, once, before it is first read.
///
/// # Errors
///
/// [`DriverError::DefaultAlreadySet`] when the device's default was already set or read; the
/// default is unchanged then.
///
/// ```no_run
/// use std::sync::Arc;
/// use strata_driver::{set_default_resource, default_resource, Async, Device};
/// let dev = Device::get(0)?;
/// set_default_resource(&dev, Arc::new(Async::new(&dev)?))?;
/// assert!(set_default_resource(&dev, Arc::new(Async::new(&dev)?)).is_err());
/// let mr = default_resource(&dev); // the Async pool
/// # let _ = mr;
/// # Ok::<(), strata_driver::DriverError>(())
/// ```
pub fn set_default_resource(
    device: &Device,
    resource: Arc<dyn MemoryResource>,
) -> Result<(), DriverError> {
    let mut all = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    let i = device.ordinal();
    if all.len() <= i {
        all.resize(i + 1, None);
    }
    if all[i].is_some() {
        return Err(DriverError::DefaultAlreadySet { ordinal: i });
    }
    all[i] = Some(resource);
    Ok(())
}
