//! Allocation statistics per named scope, like RMM's statistics profiler.
//!
//! A small pipeline (load, then three join/aggregate steps) allocates through a
//! [`Profiler`] over the simulated device; the report lists each scope's calls, peak and total
//! bytes, largest peak first.
//!
//! ```sh
//! cargo run --example profile
//! ```

use strata::profile::{Order, Profiler, format_report};
use strata::replay::SimDevice;
use strata::{Error, MemoryResource, StreamKey};

const MIB: u64 = 1 << 20;
const S: StreamKey = StreamKey::DEFAULT;

/// Allocates the columns of a table of `rows` rows and `columns` 8-byte columns.
fn load<R: MemoryResource>(mr: &R, rows: u64, columns: u64) -> Result<Vec<(u64, u64)>, Error> {
    (0..columns)
        .map(|_| mr.allocate(rows * 8, 256, S).map(|a| (a, rows * 8)))
        .collect()
}

fn free<R: MemoryResource>(mr: &R, blocks: &[(u64, u64)]) -> Result<(), Error> {
    blocks
        .iter()
        .try_for_each(|&(a, size)| mr.deallocate(a, size, 256, S))
}

/// A join: a hash table (temporary) and an output twice the size of the input's columns.
fn join<R: MemoryResource>(
    mr: &Profiler<R>,
    input: &[(u64, u64)],
) -> Result<Vec<(u64, u64)>, Error> {
    mr.profile("join", || {
        let rows: u64 = input[0].1 / 8;
        let table = mr.profile("join/hash table", || mr.allocate(rows * 16, 256, S))?;
        let out = load(mr, 2 * rows, input.len() as u64)?;
        mr.deallocate(table, rows * 16, 256, S)?;
        Ok(out)
    })
}

/// An aggregation: a small output and a sort buffer.
fn aggregate<R: MemoryResource>(
    mr: &Profiler<R>,
    input: &[(u64, u64)],
) -> Result<Vec<(u64, u64)>, Error> {
    mr.profile("aggregate", || {
        let bytes = input[0].1;
        let scratch = mr.allocate(bytes, 256, S)?;
        let out = load(mr, bytes / 8 / 100, 2)?;
        mr.deallocate(scratch, bytes, 256, S)?;
        Ok(out)
    })
}

fn main() -> Result<(), Error> {
    let mr = Profiler::new(SimDevice::new(64 << 30));
    let table = mr.profile("load", || load(&mr, 4 * MIB, 6))?;
    for step in 0..3 {
        let _step = mr.scope(format!("step {step}"));
        let joined = join(&mr, &table)?;
        let summary = aggregate(&mr, &joined)?;
        free(&mr, &joined)?;
        free(&mr, &summary)?;
    }
    free(&mr, &table)?;

    print!("{}", format_report(&mr.report(Order::PeakBytes)));
    let t = mr.totals();
    println!(
        "\nwhole program: {} allocations, peak {} MiB, total {} MiB, {} B still live",
        t.allocations,
        t.peak_bytes / MIB,
        t.total_bytes / MIB,
        t.current_bytes
    );
    Ok(())
}
