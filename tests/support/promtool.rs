//! `promtool check metrics` over a scrape (Debian's `prometheus` package, installed by
//! `scripts/test-deps.sh`).

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Panics with promtool's output unless the exposition passes `promtool check metrics`.
pub fn check_metrics(scrape: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/test-deps.sh (make deps)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
