//! A moto server harness for SDK tests: one `moto_server` per test binary on a free loopback
//! port, started on first use, killed when the test process exits (a shell watchdog) or when an
//! owned server is dropped. Tests isolate themselves with unique names; `reset()` wipes state.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use autoguardrails::aws::sdk::SdkSettings;

/// A running moto server.
pub struct MotoServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    child: Option<Child>,
    /// How long start-up took.
    pub startup: Duration,
}

fn moto_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(".venv/bin/moto_server");
    if !bin.exists() {
        panic!(
            "{} is missing: run scripts/test-deps.sh to install moto[server] into .venv/ (SDK tests need it)",
            bin.display()
        );
    }
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Sends a bare HTTP/1.1 request; returns the status code and body.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

impl MotoServer {
    /// Starts a server owned by the caller (killed on drop).
    pub fn start() -> MotoServer {
        MotoServer::start_with_env(&[])
    }

    /// Starts an owned server with extra environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`, after
    /// which moto checks every request against the caller's IAM policies).
    pub fn start_with_env(env: &[(&str, &str)]) -> MotoServer {
        MotoServer::launch(env, 0)
    }

    /// Starts an owned server at the lowest CPU priority (`nice -n 19`): a benchmark sharing the
    /// machine's cores with it then measures its own process, as against AWS, whose work is
    /// done elsewhere.
    #[allow(dead_code)]
    pub fn start_low_priority() -> MotoServer {
        MotoServer::launch(&[], 19)
    }

    fn launch(env: &[(&str, &str)], niceness: u8) -> MotoServer {
        let bin = moto_binary();
        let port = free_port();
        let started = Instant::now();
        // The watchdog shell kills moto when this test process goes away, even on panic/abort.
        let script = format!(
            "nice -n {niceness} \"$0\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & child=$!; \
             trap 'kill $child 2>/dev/null' EXIT INT TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done",
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .envs(env.iter().copied())
            .arg("-c")
            .arg(script)
            .arg(&bin)
            .stdin(Stdio::null())
            .spawn()
            .expect("failed to spawn moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http(port, "GET", "/moto-api/data.json") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        MotoServer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            child: Some(child),
            startup: started.elapsed(),
        }
    }

    /// The server shared by all tests of this binary.
    pub fn shared() -> &'static MotoServer {
        static SERVER: OnceLock<MotoServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            let s = MotoServer::start();
            eprintln!("moto_server started on {} in {:?}", s.url, s.startup);
            s
        })
    }

    /// Wipes all moto state (only for tests that own their server or run alone).
    pub fn reset(&self) {
        let (status, _) = http(self.port, "POST", "/moto-api/reset").expect("moto reset failed");
        assert_eq!(status, 200, "moto reset");
    }

    /// SDK settings pointing at this server: no retries, static test credentials, no rate limit.
    pub fn settings(&self) -> SdkSettings {
        SdkSettings {
            endpoint_url: Some(self.url.clone()),
            region: "us-east-1".to_string(),
            max_attempts: 0,
            rate_limit: None,
            static_credentials: Some(("testing".to_string(), "testing".to_string())),
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Killing the watchdog shell fires its EXIT trap, which kills moto.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

/// A name unique within this test process (moto state is shared between tests).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
