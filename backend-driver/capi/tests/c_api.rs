//! The C interface from C: `tests/c/*.c` are compiled with the system C compiler (`$CC`, else
//! `cc`) against `include/strata.h` and this crate's `cdylib`, and run on the simulated device.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::library_dir;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-capi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Compiles `tests/c/<name>.c` into an executable linked against the `cdylib`.
fn compile(name: &str, out_dir: &Path) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = library_dir();
    let exe = out_dir.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(&cc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
        ])
        .arg("-I")
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c").join(format!("{name}.c")))
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", lib_dir.display()))
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lstrata_capi")
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(
        output.status.success(),
        "{cc} failed on {name}.c:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

#[test]
fn c_program_on_the_simulated_device() {
    let dir = scratch("sim");
    let exe = compile("sim", &dir);
    let log = dir.join("log.csv");
    let output = Command::new(&exe)
        .arg(&log)
        // The default resources must not pick up a configuration from the caller's shell.
        .env_remove("STRATA_RESOURCE")
        .env_remove("STRATA_POOL_SIZE")
        .env_remove("STRATA_POOL_MAX")
        .env_remove("STRATA_LOG")
        .output()
        .expect("the C program runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the C program failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("c api: "))
        .unwrap_or_else(|| panic!("no summary line in {stdout:?}"));
    let passed: u32 = summary
        .trim_start_matches("c api: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count of passed checks");
    assert!(passed > 100, "only {passed} checks ran: {summary}");
    assert!(summary.ends_with(" 0 failed"), "{summary}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .starts_with("Thread,Time,Action")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
