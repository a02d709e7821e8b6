//! SIGTERM reaches `Shutdown` through the real signal handler (its own test binary, because it
//! signals the whole test process).

use autoguardrails::shutdown::{Shutdown, ShutdownCause};
use std::time::Duration;

#[tokio::test]
async fn sigterm_triggers_shutdown_once() {
    let shutdown = Shutdown::new();
    let _listener = shutdown.listen_for_signals().unwrap();
    assert!(!shutdown.is_triggered());
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let cause = tokio::time::timeout(Duration::from_secs(10), shutdown.wait())
        .await
        .expect("SIGTERM did not trigger shutdown");
    assert_eq!(cause, ShutdownCause::Terminate);
    // A second signal is absorbed by the listener, not fatal to the process.
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(shutdown.cause(), Some(ShutdownCause::Terminate));
}
