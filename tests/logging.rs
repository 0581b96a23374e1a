//! The CSV logging sink with the core's logging adaptor: a workload logged to a file (one per
//! device, RMM's naming) replays to the same totals.

use strata::adaptors::Logging;
use strata::logging::{CsvLog, device_log_path};
use strata::replay::{
    MeasureOptions, Plan, RandomAllocations, Replayer, SimDevice, SizeDistribution, measure,
};
use strata::trace::Trace;

#[test]
fn a_logged_workload_replays_to_the_same_totals() {
    let workload = RandomAllocations {
        count: 3000,
        sizes: SizeDistribution::LogUniform {
            min: 256,
            max: 1 << 24,
        },
        streams: 3,
        seed: 11,
        ..Default::default()
    };
    let original = Plan::new(&workload.generate().resolve().unwrap());

    let dir = std::env::temp_dir().join(format!("strata-logging-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("run.csv");
    let device = SimDevice::new(1 << 40);
    let logged = Logging::new(device.clone(), CsvLog::for_device(&base, 0).unwrap());
    let run = Replayer::new(&original, original.sim_stream_keys())
        .unwrap()
        .run(&logged)
        .unwrap();
    assert_eq!(run.failed_allocations, 0);
    let (_, log) = logged.into_parts();
    assert_eq!(log.events(), original.ops() as u64);
    log.finish().unwrap();

    let path = device_log_path(&base, 0);
    assert_eq!(path, dir.join("run.dev0.csv"));
    let replayed = Plan::new(&Trace::from_path(&path).unwrap().resolve().unwrap());
    assert_eq!(replayed.ops(), original.ops());
    assert_eq!(replayed.allocations(), original.allocations());
    assert_eq!(replayed.frees(), original.frees());
    assert_eq!(replayed.peak_live_bytes(), original.peak_live_bytes());
    assert_eq!(replayed.streams(), original.streams());
    assert_eq!(replayed.leaked(), 0);

    // Replaying the log on a fresh device gives the same measured totals as the original.
    let totals = |plan: &Plan| {
        let d = SimDevice::new(1 << 40);
        let m = measure(
            plan,
            &d,
            &plan.sim_stream_keys(),
            &|| d.in_use(),
            &MeasureOptions {
                repeats: 1,
                timeline_points: 10,
            },
            &mut || {},
        )
        .unwrap();
        (
            m.peak_live_bytes,
            m.peak_reserved_bytes,
            m.failed_allocations,
        )
    };
    assert_eq!(totals(&replayed), totals(&original));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_allocation_is_logged_and_skipped_on_replay() {
    let logged = Logging::new(SimDevice::new(4096), CsvLog::new(Vec::new()).unwrap());
    let keys = [strata::StreamKey(0xbeef)];
    let text = "Thread,Time,Action,Pointer,Size,Stream\n\
                1,t,allocate,0x1000,4096,beef\n\
                1,t,allocate,0x2000,1,beef\n\
                1,t,free,0x1000,4096,beef\n\
                1,t,free,0x2000,1,beef\n";
    let plan = Plan::new(&Trace::parse(text.as_bytes()).unwrap().resolve().unwrap());
    let run = Replayer::new(&plan, keys.to_vec())
        .unwrap()
        .run(&logged)
        .unwrap();
    assert_eq!(run.failed_allocations, 1);
    let (_, log) = logged.into_parts();
    let out = String::from_utf8(log.finish().unwrap()).unwrap();
    assert!(out.contains(",allocate failure,(nil),1,beef\n"), "{out}");
    let back = Trace::parse(out.as_bytes()).unwrap().resolve().unwrap();
    assert_eq!(back.logged_failures, 1);
    assert_eq!((back.sizes.len(), back.ops.len()), (1, 2));
}
