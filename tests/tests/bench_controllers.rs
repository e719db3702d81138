//! `skiff bench controllers` still runs end to end (issue #7), so the
//! benchmark cannot rot between the times someone measures with it: a small
//! run (5 hollow nodes, 20 replicas, one run) against a server the bench
//! starts and stops itself. Only completion and the table's shape are
//! checked, never timing; the table is printed (`-- --nocapture`).

use std::process::Command;

use skiff_tests::skiff_bin;

#[test]
fn bench_controllers_small_run_prints_its_table() -> anyhow::Result<()> {
    // The bench bounds itself: 120 s for its server to answer, 300 s for
    // the hollow nodes, --timeout for each phase; it kills its server (by
    // pid) and removes the data directory when it ends, also on failure.
    let out = Command::new(skiff_bin())
        .args(["bench", "controllers", "--nodes", "5", "--replicas", "20"])
        .args(["--runs", "1", "--timeout", "300"])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    anyhow::ensure!(
        out.status.success(),
        "bench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for row in ["| scale 0 → 20 |", "| rolling update |", "| scale 20 → 0 |"] {
        anyhow::ensure!(stdout.contains(row), "no row {row:?} in:\n{stdout}");
    }
    anyhow::ensure!(
        stdout.contains("| phase | seconds | pods/s | server CPU s |"),
        "no table header in:\n{stdout}"
    );
    Ok(())
}
