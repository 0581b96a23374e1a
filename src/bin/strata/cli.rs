//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::units::Bytes;

/// Replay and study GPU allocation logs (RMM's CSV format): which memory resource serves a
/// workload best, how much memory it needs, and how fast it is. Without a GPU, replays run on
/// a simulated device.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay an allocation log (RMM's CSV: Thread,Time,Action,Pointer,Size,Stream) against
    /// memory resources.
    Replay {
        /// The trace file.
        trace: PathBuf,
        #[command(flatten)]
        replay: ReplayArgs,
    },
    /// Generate RMM's random_allocations workload and replay it.
    Bench(BenchArgs),
    /// List the GPUs and what they support, or say why there are none.
    Devices,
    /// Allocation statistics of a trace per scope (stream or thread), like RMM's profiler.
    Profile(ProfileArgs),
}

/// Where to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// A GPU when the CUDA driver and a device are there, else the simulated device.
    Auto,
    /// The simulated device (no GPU needed; same algorithms, no memory behind them).
    Sim,
    /// The first CUDA GPU; an error if there is none.
    Cuda,
}

/// How to print the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// One JSON object (schema `strata-replay/1`, documented in `strata::replay`).
    Json,
    /// A header line, then one line per resource.
    Csv,
}

/// The device capacity: a byte count, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capacity {
    Auto,
    Bytes(u64),
}

impl std::str::FromStr for Capacity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            Ok(Capacity::Auto)
        } else {
            s.parse::<Bytes>().map(|b| Capacity::Bytes(b.0))
        }
    }
}

/// The options every replaying command shares.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Where to replay.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// The resources to measure, comma-separated: pool, pool-best (the pool with a bounded
    /// best fit: less memory, slower), arena, binning, fixed, stream-pool, async, cuda,
    /// managed; or `all` (every one the device has).
    #[arg(long, short, default_value = "all")]
    pub resource: String,
    /// The memory the timed replays may use, in bytes with an optional unit (512MiB, 8GiB,
    /// 1e9). On the simulated device: its capacity (auto: 80 GiB, or 4 x the trace's peak live
    /// bytes if more). On a GPU: what strata's pools, stream-pool, arena, binning and fixed may
    /// take from the device; the pools take it all at once, as RMM's replayer gives its pool
    /// 24 GiB (auto: 24 GiB, or 90% of the free memory if less); cuda, managed and async are
    /// limited by the device only.
    #[arg(long, default_value = "auto")]
    pub capacity: Capacity,
    /// Timed replays per resource, after one warm-up replay; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub repeat: u32,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw the memory timeline (live and reserved bytes per resource) as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Skip the search for the smallest capacity that replays with no failure.
    #[arg(long)]
    pub no_search: bool,
}

/// The size distribution of the generated workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sizes {
    /// Uniform on 1..=max-size bytes (RMM's random_allocations).
    Uniform,
    /// Log-uniform on min-size..=max-size bytes.
    LogUniform,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Allocations in all (each is freed, so twice as many operations).
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub count: u32,
    /// The size distribution.
    #[arg(long, value_enum, default_value_t = Sizes::Uniform)]
    pub sizes: Sizes,
    /// The largest allocation.
    #[arg(long, short = 'm', default_value = "1MiB")]
    pub max_size: Bytes,
    /// The smallest allocation (log-uniform sizes only).
    #[arg(long, default_value = "256")]
    pub min_size: Bytes,
    /// No allocation is made that would take the live bytes to this or beyond, unless nothing
    /// is live (RMM: 16000 MiB).
    #[arg(long, default_value = "16000MiB")]
    pub max_usage: Bytes,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Streams to spread the allocations over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub streams: u32,
    /// Also write the generated workload as a trace (RMM's CSV) to this file.
    #[arg(long, value_name = "FILE.csv")]
    pub save: Option<PathBuf>,
    #[command(flatten)]
    pub replay: ReplayArgs,
}

/// What a profile groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeBy {
    /// One scope per stream.
    Stream,
    /// One scope per logging thread.
    Thread,
}

/// How a profile is sorted (largest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderArg {
    /// Peak bytes.
    Peak,
    /// Total bytes.
    Total,
    /// Calls (allocations).
    Calls,
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// What a scope is.
    #[arg(long, value_enum, default_value_t = ScopeBy::Stream)]
    pub by: ScopeBy,
    /// How to sort the scopes.
    #[arg(long, value_enum, default_value_t = OrderArg::Peak)]
    pub order: OrderArg,
}
