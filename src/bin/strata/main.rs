//! `strata`: replay and study allocation logs (RMM's CSV format), generate RMM's
//! random_allocations workload, list GPUs, and profile allocations per scope.
//!
//! ```text
//! strata replay TRACE.csv [--device auto|sim|cuda] [--resource pool,arena,...] [--capacity BYTES|auto]
//!                         [--repeat N] [--format table|json|csv] [--plot FILE.svg] [--no-search]
//! strata bench [--count N] [--sizes uniform|log-uniform] [--max-size BYTES] [--streams N] [--seed N]
//!              [--save FILE.csv] + the options of replay
//! strata devices
//! strata profile TRACE.csv [--by stream|thread] [--order peak|total|calls]
//! ```
//!
//! Exit status: 0 on success, 1 when the work failed (unreadable or malformed trace, no GPU
//! where one was asked for, a resource that corrupted its books), 2 for a bad command line.

mod cli;
mod gpu;
mod output;
mod plot;
mod profile_cmd;
mod resources;
mod units;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ReplayArgs};
use strata::replay::{Plan, RandomAllocations, Report, SizeDistribution, TraceReport};
use strata::trace::Trace;

/// An error for the user: printed as `strata: error: …`, exit status 1.
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay { trace, replay } => replay_file(&trace, &replay),
        Command::Bench(bench) => run_bench(&bench),
        Command::Devices => gpu::list_devices(&mut std::io::stdout()),
        Command::Profile(args) => profile_cmd::run(&args).map_err(Failure),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("strata: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Reads, parses and resolves a trace file; every error names the file (and the line).
fn load_plan(path: &std::path::Path) -> Result<Plan, Failure> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| Failure(format!("cannot read trace `{shown}`: {e}")))?;
    let trace = Trace::parse(std::io::BufReader::new(file))
        .map_err(|e| Failure(format!("{shown}: {e}")))?;
    let resolved = trace
        .resolve()
        .map_err(|e| Failure(format!("{shown}: {e}")))?;
    Ok(Plan::new(&resolved))
}

fn replay_file(path: &std::path::Path, args: &ReplayArgs) -> Result<(), Failure> {
    let plan = load_plan(path)?;
    let source = path.display().to_string();
    replay_plan(&plan, TraceReport::new(source, &plan), args)
}

fn run_bench(args: &cli::BenchArgs) -> Result<(), Failure> {
    let sizes = match args.sizes {
        cli::Sizes::Uniform => SizeDistribution::Uniform {
            max: args.max_size.0,
        },
        cli::Sizes::LogUniform => SizeDistribution::LogUniform {
            min: args.min_size.0,
            max: args.max_size.0,
        },
    };
    if args.count == 0 {
        return Err(Failure("--count must be at least 1".into()));
    }
    if args.max_size.0 == 0 || (args.sizes == cli::Sizes::LogUniform && args.min_size.0 == 0) {
        return Err(Failure("sizes must be at least 1 byte".into()));
    }
    if args.sizes == cli::Sizes::LogUniform && args.min_size.0 > args.max_size.0 {
        return Err(Failure(format!(
            "--min-size {} is larger than --max-size {}",
            args.min_size.0, args.max_size.0
        )));
    }
    let workload = RandomAllocations {
        count: args.count,
        sizes,
        max_usage: args.max_usage.0,
        seed: args.seed,
        streams: args.streams.max(1),
    };
    let trace = workload.generate();
    if let Some(path) = &args.save {
        let file = std::fs::File::create(path)
            .map_err(|e| Failure(format!("cannot create `{}`: {e}", path.display())))?;
        let mut out = std::io::BufWriter::new(file);
        strata::logging::write_trace(&trace, &mut out)
            .and_then(|()| out.flush())
            .map_err(|e| Failure(format!("cannot write `{}`: {e}", path.display())))?;
    }
    let plan = Plan::new(&trace.resolve()?);
    let dist = match args.sizes {
        cli::Sizes::Uniform => format!("uniform 1..={}", args.max_size.0),
        cli::Sizes::LogUniform => format!("log-uniform {}..={}", args.min_size.0, args.max_size.0),
    };
    let source = format!(
        "random_allocations count={} sizes={dist} streams={} seed={}",
        args.count,
        args.streams.max(1),
        args.seed
    );
    replay_plan(&plan, TraceReport::new(source, &plan), &args.replay)
}

fn replay_plan(plan: &Plan, trace: TraceReport, args: &ReplayArgs) -> Result<(), Failure> {
    let device = gpu::select(args.device)?;
    let kinds = resources::parse_list(&args.resource, &device.available())?;
    let capacity = match args.capacity {
        cli::Capacity::Bytes(b) => b,
        cli::Capacity::Auto => device.auto_capacity(plan),
    };
    let progress = output::Progress::new(
        std::io::stderr().is_terminal(),
        kinds.len() as u64 * (1 + args.repeat.max(1) as u64),
    );
    let ctx = resources::Context {
        plan,
        capacity,
        repeats: args.repeat.max(1),
        search: !args.no_search,
        progress: &progress,
    };
    let mut reports = Vec::with_capacity(kinds.len());
    for kind in &kinds {
        progress.set_message(kind.name());
        reports.push(device.measure(*kind, &ctx)?);
    }
    progress.finish();
    let report = Report {
        schema: Report::SCHEMA,
        device: device.report(),
        trace,
        capacity_bytes: capacity,
        repeats: ctx.repeats as usize,
        resources: reports,
    };
    if let Some(path) = &args.plot {
        let svg = plot::timeline_svg(&report);
        std::fs::write(path, svg)
            .map_err(|e| Failure(format!("cannot write plot `{}`: {e}", path.display())))?;
    }
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        cli::Format::Table => output::table(&report, &resources::notes(&kinds, plan), &mut out),
        cli::Format::Json => output::json(&report, &mut out),
        cli::Format::Csv => output::csv(&report, &mut out),
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Failure(format!("cannot write the report: {e}")))?;
    if let Some(path) = &args.plot
        && args.format == cli::Format::Table
    {
        eprintln!("wrote the memory timeline to {}", path.display());
    }
    Ok(())
}
