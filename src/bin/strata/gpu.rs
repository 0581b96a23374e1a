//! Which device replays run on, and `strata devices`.

use std::io::Write;

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
    /// A CUDA GPU.
    #[cfg(feature = "driver")]
    Cuda(cuda::Gpu),
}

/// Picks the device `--device` asks for.
pub fn select(arg: DeviceArg) -> Result<Device, Failure> {
    match arg {
        DeviceArg::Sim => Ok(Device::Sim {
            note: "--device sim".into(),
        }),
        DeviceArg::Auto => Ok(match first_gpu() {
            Ok(device) => device,
            Err(reason) => Device::Sim {
                note: format!("--device auto found no GPU: {reason}"),
            },
        }),
        DeviceArg::Cuda => first_gpu().map_err(|reason| {
            Failure(format!(
                "--device cuda: {reason}; replay on the simulated device with --device sim"
            ))
        }),
    }
}

#[cfg(feature = "driver")]
fn first_gpu() -> Result<Device, String> {
    cuda::Gpu::first().map(Device::Cuda)
}

#[cfg(not(feature = "driver"))]
fn first_gpu() -> Result<Device, String> {
    Err("no CUDA support: strata was built without its `driver` feature".into())
}

impl Device {
    /// The capacity `--capacity auto` means on this device.
    pub fn auto_capacity(&self, plan: &Plan) -> u64 {
        match self {
            Device::Sim { .. } => {
                SIM_DEFAULT_CAPACITY.max(plan.peak_live_bytes().saturating_mul(4))
            }
            #[cfg(feature = "driver")]
            Device::Cuda(gpu) => gpu.auto_capacity(),
        }
    }

    /// The resources `--resource all` means on this device.
    pub fn available(&self) -> Vec<Kind> {
        match self {
            Device::Sim { .. } => Kind::ALL
                .into_iter()
                .filter(|&k| resources::has_model(k))
                .collect(),
            #[cfg(feature = "driver")]
            Device::Cuda(gpu) => gpu.available(),
        }
    }

    pub fn report(&self) -> DeviceReport {
        match self {
            Device::Sim { note } => DeviceReport {
                kind: "sim".into(),
                name: "simulated device".into(),
                note: note.clone(),
            },
            #[cfg(feature = "driver")]
            Device::Cuda(gpu) => gpu.report(),
        }
    }

    pub fn measure(&self, kind: Kind, ctx: &Context<'_>) -> Result<ResourceReport, Failure> {
        match self {
            Device::Sim { .. } => resources::measure_sim(kind, ctx),
            #[cfg(feature = "driver")]
            Device::Cuda(gpu) => gpu.measure(kind, ctx),
        }
    }
}

/// `strata devices`: one block per GPU, or an error saying why there is none.
pub fn list_devices(out: &mut impl Write) -> Result<(), Failure> {
    #[cfg(feature = "driver")]
    {
        cuda::list(out)
    }
    #[cfg(not(feature = "driver"))]
    {
        let _ = out;
        Err(Failure(
            "no CUDA support: strata was built without its `driver` feature; `strata replay` runs on the simulated device"
                .into(),
        ))
    }
}

#[cfg(feature = "driver")]
mod cuda {
    use std::cell::RefCell;
    use std::io::Write;
    use std::sync::Arc;

    use strata::MemoryResource;
    use strata::adaptors::AsUpstream;
    use strata::algo::{ArenaConfig, Heap, PoolConfig};
    use strata::driver::{
        self, Async, AsyncOptions, DeviceMemory, DriverError, EventOrder, Managed, Stream,
    };
    use strata::replay::{DeviceReport, Meter, Metered, ResourceReport, measure};
    use strata::resources::{
        Arena, Binning, DEFAULT_ARENA_STREAMS, DEFAULT_POOL_STREAMS, FixedSize, Pool,
        StreamOrderedPool,
    };

    use crate::Failure;
    use crate::resources::{self, BIN_EXPONENTS, Context, Kind};
    use crate::units::Human;

    /// `--capacity auto` on a GPU: the pool size RMM's replayer gives its pool (24 GiB), or 90%
    /// of the free memory when that is less.
    const GPU_DEFAULT_CAPACITY: u64 = 24 << 30;

    /// A GPU to replay on.
    pub struct Gpu {
        device: driver::Device,
        name: String,
        free: u64,
        total: u64,
        version: i32,
        pools: bool,
        managed: bool,
    }

    fn version_text(v: i32) -> String {
        format!("{}.{}", v / 1000, v % 1000 / 10)
    }

    impl Gpu {
        /// GPU 0, or why there is none.
        pub fn first() -> Result<Gpu, String> {
            let version = driver::driver().map_err(|e| e.to_string())?.version();
            let device = driver::Device::get(0).map_err(|e| e.to_string())?;
            let name = device.name().map_err(|e| e.to_string())?;
            let info = device.memory_info().map_err(|e| e.to_string())?;
            Ok(Gpu {
                pools: device.supports_memory_pools().unwrap_or(false),
                managed: device.supports_managed_memory().unwrap_or(false),
                device,
                name,
                free: info.free,
                total: info.total,
                version,
            })
        }

        pub fn auto_capacity(&self) -> u64 {
            GPU_DEFAULT_CAPACITY.min(self.free / 10 * 9)
        }

        pub fn available(&self) -> Vec<Kind> {
            Kind::ALL
                .into_iter()
                .filter(|k| match k {
                    Kind::Async => self.pools,
                    Kind::Managed => self.managed,
                    _ => true,
                })
                .collect()
        }

        pub fn report(&self) -> DeviceReport {
            DeviceReport {
                kind: "cuda".into(),
                name: format!("GPU 0: {}", self.name),
                note: format!(
                    "CUDA driver {}, {} of {} free",
                    version_text(self.version),
                    Human(self.free),
                    Human(self.total)
                ),
            }
        }

        /// Replays on real streams (one per stream of the trace), synchronised after every
        /// replay (untimed); the capacity search runs on the resource's simulated model.
        pub fn measure(&self, kind: Kind, ctx: &Context<'_>) -> Result<ResourceReport, Failure> {
            let dev = &self.device;
            let streams = (0..ctx.plan.streams().len().max(1))
                .map(|_| Stream::new(dev))
                .collect::<Result<Vec<Stream>, DriverError>>()
                .map_err(|e| Failure(format!("cannot create a stream: {e}")))?;
            let cap = ctx.capacity;
            let pool_config = PoolConfig::new(cap).with_maximum(cap);
            let meter = Arc::new(Meter::default());
            let upstream = || Metered::new(DeviceMemory::new(dev), meter.clone()).with_limit(cap);
            let reserved = || meter.current();
            let built = |e: strata::Error| -> Result<ResourceReport, String> {
                Err(format!("cannot be built with capacity {}: {e}", Human(cap)))
            };
            let run = Run {
                ctx,
                kind,
                streams: &streams,
            };
            let report = match kind {
                Kind::Cuda => {
                    let mr = DeviceMemory::new(dev);
                    run.go(&mr, &|| mr.allocated_bytes())
                }
                Kind::Managed => {
                    let mr = Managed::new(dev);
                    run.go(&mr, &|| mr.allocated_bytes())
                }
                Kind::Async => match Async::with_options(dev, AsyncOptions::default()) {
                    Ok(mr) => run.go(&mr, &|| mr.reserved_current().unwrap_or(0)),
                    Err(e) => Err(format!("cannot create the driver pool: {e}")),
                },
                Kind::Pool => match Pool::new(upstream(), pool_config) {
                    Ok(mr) => run.go(&mr, &reserved),
                    Err(e) => built(e),
                },
                Kind::PoolBest => match resources::best_fit_pool(upstream(), pool_config) {
                    Ok(mr) => run.go(&mr, &reserved),
                    Err(e) => built(e),
                },
                Kind::StreamPool => {
                    // As `driver::stream_ordered_pool`, with room for every stream of the trace.
                    let streams = ctx.plan.streams().len().max(DEFAULT_POOL_STREAMS);
                    match StreamOrderedPool::<_, _>::with_streams(
                        upstream(),
                        EventOrder::new(dev),
                        pool_config,
                        streams,
                    ) {
                        Ok(mr) => {
                            let mr = Arc::new(mr);
                            driver::notify_on_stream_drop(&mr);
                            run.go(&*mr, &reserved)
                        }
                        Err(e) => built(e),
                    }
                }
                Kind::Arena => {
                    let streams = ctx.plan.streams().len().max(DEFAULT_ARENA_STREAMS);
                    match Arena::<_, _>::with_streams(
                        upstream(),
                        EventOrder::new(dev),
                        ArenaConfig::new(cap),
                        streams,
                    ) {
                        Ok(mr) => run.go(&mr, &reserved),
                        Err(e) => built(e),
                    }
                }
                Kind::Binning => {
                    let bins = Pool::new(upstream(), pool_config).and_then(|pool| {
                        Binning::<_, Heap>::with_exponents(
                            AsUpstream::new(pool),
                            BIN_EXPONENTS.0,
                            BIN_EXPONENTS.1,
                        )
                    });
                    match bins {
                        Ok(mr) => run.go(&mr, &reserved),
                        Err(e) => built(e),
                    }
                }
                Kind::Fixed => match resources::fixed_config(ctx.plan) {
                    Ok(config) => {
                        let mr = FixedSize::<_, Heap>::new(upstream(), config);
                        run.go(&mr, &reserved)
                    }
                    Err(e) => built(e),
                },
            };
            match report {
                Ok(mut report) => {
                    report.min_capacity_bytes = resources::search_capacity(kind, ctx)?;
                    report.min_capacity_ratio = report
                        .min_capacity_bytes
                        .filter(|_| ctx.plan.peak_live_bytes() > 0)
                        .map(|c| c as f64 / ctx.plan.peak_live_bytes() as f64);
                    Ok(report)
                }
                Err(why) => {
                    for _ in 0..=ctx.repeats {
                        ctx.progress.tick();
                    }
                    Ok(ResourceReport::failed(kind.name(), why))
                }
            }
        }
    }

    /// One resource's replays on the GPU.
    struct Run<'a, 'c> {
        ctx: &'a Context<'c>,
        kind: Kind,
        streams: &'a [Stream],
    }

    impl Run<'_, '_> {
        fn go<R: MemoryResource + ?Sized>(
            &self,
            mr: &R,
            reserved: &dyn Fn() -> u64,
        ) -> Result<ResourceReport, String> {
            let keys: Vec<_> = self.streams.iter().map(Stream::key).collect();
            let sync_error = RefCell::new(None);
            let m = measure(
                self.ctx.plan,
                mr,
                &keys,
                reserved,
                &self.ctx.options(),
                &mut || {
                    for s in self.streams {
                        if let Err(e) = s.synchronize() {
                            sync_error.borrow_mut().get_or_insert(e);
                        }
                    }
                    self.ctx.progress.tick();
                },
            )
            .map_err(|e| e.to_string())?;
            if let Some(e) = sync_error.into_inner() {
                return Err(format!("a stream failed: {e}"));
            }
            Ok(ResourceReport::measured(
                self.kind.name(),
                &m,
                None,
                self.ctx.plan.peak_live_bytes(),
            ))
        }
    }

    fn yes_no(r: Result<bool, DriverError>) -> String {
        match r {
            Ok(true) => "yes".into(),
            Ok(false) => "no".into(),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// `strata devices` with the driver backend.
    pub fn list(out: &mut impl Write) -> Result<(), Failure> {
        let drv = driver::driver().map_err(|e| {
            Failure(format!(
                "no CUDA GPU: {e}; `strata replay` runs on the simulated device"
            ))
        })?;
        let devices = driver::Device::all().map_err(|e| Failure(e.to_string()))?;
        let mut text = format!(
            "CUDA driver {}, {} device(s)\n",
            version_text(drv.version()),
            devices.len()
        );
        for d in &devices {
            let name = d.name().unwrap_or_else(|e| format!("(name unknown: {e})"));
            text += &format!("GPU {}: {name}\n", d.ordinal());
            match d.compute_capability() {
                Ok((major, minor)) => {
                    let sms = d
                        .multiprocessor_count()
                        .map_or_else(|e| format!("unknown ({e})"), |n| n.to_string());
                    text +=
                        &format!("  compute capability {major}.{minor}, {sms} multiprocessors\n");
                }
                Err(e) => text += &format!("  compute capability unknown ({e})\n"),
            }
            match d.memory_info() {
                Ok(m) => {
                    text += &format!(
                        "  memory: {} total, {} free\n",
                        Human(m.total),
                        Human(m.free)
                    )
                }
                Err(e) => text += &format!("  memory: unknown ({e})\n"),
            }
            text += &format!(
                "  memory pools (cuMemAllocAsync, `async`): {}; pool export as POSIX fd: {}\n",
                yes_no(d.supports_memory_pools()),
                yes_no(d.supports_posix_fd_pools())
            );
            text += &format!(
                "  managed memory (`managed`): {}; concurrent managed access: {}\n",
                yes_no(d.supports_managed_memory()),
                yes_no(d.supports_concurrent_managed_access())
            );
        }
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Failure(format!("cannot write the list: {e}")))
    }
}
