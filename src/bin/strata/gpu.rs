//! Which device replays run on, and `strata devices`.

use std::io::{self, Write};

use strata::replay::{DeviceReport, Plan, ResourceReport};

use crate::Failure;
use crate::cli::DeviceArg;
use crate::resources::{self, Context, Kind};

/// 80 GiB: the simulated device's default capacity (an H100's memory).
const SIM_DEFAULT_CAPACITY: u64 = 80 << 30;

/// The device replays run on.
pub enum Device {
    /// The simulated device, with why it was chosen.
    Sim { note: String },
}

/// Why there is no GPU to replay on.
fn no_gpu_reason() -> String {
    "this strata has no CUDA backend yet".into()
}

/// Picks the device `--device` asks for.
pub fn select(arg: DeviceArg) -> Result<Device, Failure> {
    match arg {
        DeviceArg::Sim => Ok(Device::Sim {
            note: "--device sim".into(),
        }),
        DeviceArg::Auto => Ok(Device::Sim {
            note: no_gpu_reason(),
        }),
        DeviceArg::Cuda => Err(Failure(format!(
            "--device cuda: {}; replay on the simulated device with --device sim",
            no_gpu_reason()
        ))),
    }
}

impl Device {
    /// The capacity `--capacity auto` means on this device.
    pub fn auto_capacity(&self, plan: &Plan) -> u64 {
        match self {
            Device::Sim { .. } => {
                SIM_DEFAULT_CAPACITY.max(plan.peak_live_bytes().saturating_mul(4))
            }
        }
    }

    /// The resources `--resource all` means on this device.
    pub fn available(&self) -> Vec<Kind> {
        match self {
            Device::Sim { .. } => Kind::ALL
                .into_iter()
                .filter(|&k| resources::has_model(k))
                .collect(),
        }
    }

    pub fn report(&self) -> DeviceReport {
        match self {
            Device::Sim { note } => DeviceReport {
                kind: "sim".into(),
                name: "simulated device".into(),
                note: note.clone(),
            },
        }
    }

    pub fn measure(&self, kind: Kind, ctx: &Context<'_>) -> Result<ResourceReport, Failure> {
        match self {
            Device::Sim { .. } => resources::measure_sim(kind, ctx),
        }
    }
}

/// `strata devices`: one block per GPU, or an error saying why there is none.
pub fn list_devices(_out: &mut impl Write) -> Result<(), io::Error> {
    Err(io::Error::other(format!(
        "no CUDA device: {}; `strata replay` runs on the simulated device",
        no_gpu_reason()
    )))
}
