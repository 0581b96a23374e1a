//! The `strata` binary, run as a user would: good and bad traces, every output format, the
//! device listing without a GPU, bench and profile; and, ignored without a GPU, the replay of
//! every resource on one.
//!
//! The binary is the one cargo built for these tests, or `$STRATA_BIN` when set. On the GPU
//! machine (no toolchain there), pack it along:
//! `PACK_BINS=strata ../shared/tools/gpu-pack -p strata --test cli`; the tests then find it in
//! `.gpu/tools/`.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `strata` binary to run.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(path);
    }
    let built = PathBuf::from(env!("CARGO_BIN_EXE_strata"));
    let packed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".gpu/tools/strata");
    if !built.exists() && packed.exists() {
        packed
    } else {
        built
    }
}

fn strata(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the strata binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch file unique to this test process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8 here")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let name = format!("strata-cli-test-{}-{name}", std::process::id());
    Scratch(std::env::temp_dir().join(name))
}

fn write_trace(name: &str, body: &str) -> Scratch {
    let file = scratch(name);
    std::fs::write(
        &file.0,
        format!("Thread,Time,Action,Pointer,Size,Stream\n{body}"),
    )
    .unwrap();
    file
}

#[test]
fn replays_the_bundled_sample_as_a_table() {
    let o = strata(&[
        "replay",
        "examples/traces/sample.csv",
        "--device",
        "sim",
        "--repeat",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("5000 ops: 2500 allocations, 2500 frees, 2 streams"),
        "{out}"
    );
    assert!(out.contains("simulated device"), "{out}");
    let cuda = out
        .lines()
        .find(|l| l.starts_with("cuda "))
        .unwrap_or_else(|| panic!("no cuda line in {out}"));
    assert!(cuda.contains("(1.000x)"), "{cuda}");
    assert!(
        o.stderr.is_empty(),
        "no progress bar in a pipe: {}",
        stderr(&o)
    );
}

/// A generated workload of many sizes: the best-fit pool replays it with no failure and
/// needs no more than the good-fit pool's device.
#[test]
fn the_best_fit_pool_replays_and_needs_no_more_memory() {
    let o = strata(&[
        "bench",
        "--count",
        "3000",
        "--sizes",
        "log-uniform",
        "--max-size",
        "64MiB",
        "--max-usage",
        "2GiB",
        "--seed",
        "7",
        "--device",
        "sim",
        "--resource",
        "pool,pool-best",
        "--repeat",
        "1",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let r = v["resources"].as_array().unwrap();
    let names: Vec<_> = r.iter().map(|x| x["name"].as_str()).collect();
    assert_eq!(names, [Some("pool"), Some("pool-best")]);
    for x in r {
        assert_eq!(x["failed_allocations"], 0, "{x}");
    }
    let cap = |x: &serde_json::Value| x["min_capacity_bytes"].as_u64().expect("searched");
    assert!(cap(&r[1]) <= cap(&r[0]), "best fit needed more: {v}");
}

#[test]
fn json_output_parses_and_has_the_documented_fields() {
    let o = strata(&[
        "replay",
        "examples/traces/sample.csv",
        "--device",
        "sim",
        "--resource",
        "cuda,async",
        "--repeat",
        "2",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["schema"], "strata-replay/1");
    assert_eq!(v["device"]["kind"], "sim");
    assert_eq!(v["trace"]["ops"], 5000);
    assert_eq!(v["trace"]["streams"], 2);
    assert_eq!(v["repeats"], 2);
    let peak = v["trace"]["peak_live_bytes"].as_u64().unwrap();
    let resources = v["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2);
    let cuda = &resources[0];
    assert_eq!(cuda["name"], "cuda");
    assert!(cuda["ns_per_op_median"].as_f64().unwrap() > 0.0);
    assert!(cuda["ns_per_op_min"].as_f64() <= cuda["ns_per_op_max"].as_f64());
    assert_eq!(cuda["peak_live_bytes"].as_u64(), Some(peak));
    assert_eq!(cuda["peak_reserved_bytes"].as_u64(), Some(peak));
    assert_eq!(cuda["min_capacity_bytes"].as_u64(), Some(peak));
    assert_eq!(cuda["min_capacity_ratio"].as_f64(), Some(1.0));
    assert_eq!(cuda["failed_allocations"], 0);
    assert!(cuda["error"].is_null());
    // The driver's allocator cannot run on the simulated device: the line says why.
    assert!(
        resources[1]["error"]
            .as_str()
            .unwrap()
            .contains("needs a GPU")
    );
}

#[test]
fn csv_output_has_one_line_per_resource() {
    let o = strata(&[
        "replay",
        "examples/traces/sample.csv",
        "--device",
        "sim",
        "--resource",
        "cuda",
        "--repeat",
        "1",
        "--no-search",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("tool,resource,device,trace,ops,ns_per_op_median"));
    let fields: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(fields.len(), lines[0].split(',').count());
    assert_eq!(
        &fields[..5],
        ["strata", "cuda", "sim", "sample.csv", "5000"]
    );
    assert!(fields[5].parse::<f64>().unwrap() > 0.0);
    assert_eq!(fields[10], "", "no search asked, no min capacity");
    assert_eq!(fields[13], "1", "ok");
}

#[test]
fn a_malformed_line_is_refused_with_its_number() {
    let path = write_trace(
        "malformed.csv",
        "1,t,allocate,0x1000,256,0\n1,t,allocate,0x2000,lots,0\n",
    );
    let o = strata(&["replay", path.path()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("`lots`"), "{err}");
    assert!(err.contains("malformed.csv"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn a_free_of_a_pointer_never_allocated_is_refused() {
    let path = write_trace(
        "unknown-free.csv",
        "1,t,allocate,0x1000,256,0\n1,t,free,0x1000,256,0\n1,t,free,0x1000,256,0\n",
    );
    let o = strata(&["replay", path.path()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("line 4") && err.contains("not live"), "{err}");
}

#[test]
fn a_missing_file_and_a_bad_option_say_so() {
    let o = strata(&["replay", "no/such/trace.csv"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read trace `no/such/trace.csv`"),
        "{}",
        stderr(&o)
    );

    let o = strata(&["replay", "examples/traces/sample.csv", "--resource", "heap"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown resource `heap`"),
        "{}",
        stderr(&o)
    );

    let o = strata(&["replay", "examples/traces/sample.csv", "--capacity", "lots"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");

    let o = strata(&["bench", "--count", "0", "--device", "sim"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--count must be at least 1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn failed_allocations_are_counted_not_fatal() {
    let path = write_trace(
        "tight.csv",
        "1,t,allocate,0x1000,4096,0\n\
         1,t,allocate failure,(nil),99999,0\n\
         1,t,allocate,0x2000,4096,0\n\
         1,t,free,0x1000,4096,0\n\
         1,t,free,0x2000,4096,0\n",
    );
    let o = strata(&[
        "replay",
        path.path(),
        "--device",
        "sim",
        "--resource",
        "cuda",
        "--capacity",
        "6KiB",
        "--repeat",
        "1",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trace"]["logged_failures"], 1);
    assert_eq!(v["capacity_bytes"], 6144);
    let cuda = &v["resources"][0];
    assert_eq!(cuda["failed_allocations"], 1);
    assert_eq!(cuda["min_capacity_bytes"], 8192);
}

#[test]
fn plot_writes_an_svg_timeline() {
    let svg = scratch("timeline.svg");
    let o = strata(&[
        "replay",
        "examples/traces/sample.csv",
        "--device",
        "sim",
        "--repeat",
        "1",
        "--no-search",
        "--plot",
        svg.path(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg.0).unwrap();
    assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(text.trim_end().ends_with("</svg>"));
    assert!(text.contains("cuda reserved"));
    assert!(text.matches("<polyline").count() >= 2, "reserved and live");
}

#[test]
fn bench_generates_saves_and_replays_rmm_workload() {
    let saved = scratch("bench.csv");
    let o = strata(&[
        "bench",
        "--count",
        "500",
        "--sizes",
        "log-uniform",
        "--max-size",
        "4MiB",
        "--streams",
        "3",
        "--seed",
        "9",
        "--save",
        saved.path(),
        "--device",
        "sim",
        "--repeat",
        "1",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trace"]["allocations"], 500);
    assert_eq!(v["trace"]["ops"], 1000);
    assert_eq!(v["trace"]["streams"], 3);
    assert!(
        v["trace"]["source"]
            .as_str()
            .unwrap()
            .starts_with("random_allocations count=500 sizes=log-uniform 256..=4194304")
    );
    // The saved trace replays to the same peak.
    let o2 = strata(&[
        "replay",
        saved.path(),
        "--device",
        "sim",
        "--resource",
        "cuda",
        "--repeat",
        "1",
        "--format",
        "json",
    ]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    let v2: serde_json::Value = serde_json::from_slice(&o2.stdout).unwrap();
    assert_eq!(
        v2["trace"]["peak_live_bytes"],
        v["trace"]["peak_live_bytes"]
    );
}

#[test]
fn profile_reports_per_stream_statistics() {
    let o = strata(&["profile", "examples/traces/sample.csv", "--order", "calls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    assert!(lines.next().unwrap().contains("ncalls"));
    let calls: u64 = lines
        .by_ref()
        .take(2)
        .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(calls, 2500, "{out}");
    assert!(
        out.contains("stream 0") && out.contains("stream 1"),
        "{out}"
    );
}

#[test]
fn no_gpu_is_said_clearly() {
    let o = strata(&["devices"]);
    if o.status.success() {
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("GPU 0"));
    } else {
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(err.contains("no CUDA"), "{err}");
        assert!(!err.contains("panicked"), "{err}");

        let o = strata(&["replay", "examples/traces/sample.csv", "--device", "cuda"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("--device cuda"), "{}", stderr(&o));

        let o = strata(&[
            "replay",
            "examples/traces/sample.csv",
            "--resource",
            "cuda",
            "--repeat",
            "1",
            "--no-search",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("simulated device"));
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn replays_every_resource_on_a_gpu() {
    let o = strata(&["devices"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = stdout(&o);
    assert!(
        listing.contains("GPU 0:") && listing.contains("memory pools"),
        "{listing}"
    );

    let o = strata(&[
        "replay",
        "examples/traces/sample.csv",
        "--device",
        "cuda",
        "--repeat",
        "2",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["device"]["kind"], "cuda");
    let resources = v["resources"].as_array().unwrap();
    let names: Vec<&str> = resources
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for name in [
        "pool",
        "stream-pool",
        "arena",
        "binning",
        "fixed",
        "async",
        "cuda",
        "managed",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for r in resources {
        assert!(r["error"].is_null(), "{r}");
        assert!(r["ns_per_op_median"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_reserved_bytes"].as_u64().unwrap() > 0, "{r}");
        // The fixed resource's blocks are the largest request (64 MiB): it needs far more
        // than the capacity; every other resource replays the sample without a failure.
        if r["name"] != "fixed" {
            assert_eq!(r["failed_allocations"], 0, "{r}");
        }
    }

    // The lead's comparison with RMM's replayer: one CSV line per resource.
    let o = strata(&[
        "replay",
        "examples/traces/sample.csv",
        "--device",
        "cuda",
        "--resource",
        "pool,stream-pool,arena,binning,async,cuda",
        "--repeat",
        "2",
        "--no-search",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(
        out.lines()
            .skip(1)
            .all(|l| l.contains(",cuda,sample.csv,5000,")),
        "{out}"
    );
}
