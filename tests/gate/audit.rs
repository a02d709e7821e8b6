//! The JSON-lines audit log: concurrent writers (threads and processes) never interleave or lose
//! lines, files are appended to and never truncated, days rotate in UTC, and listing filters.

use std::sync::Arc;

use autoguardrails::gate::audit::{self, AuditQuery, AuditRecord, AuditSink, JsonLinesAudit};
use autoguardrails::gate::{collect::Gate, files, rules};
use jiff::Timestamp;

use super::support::{root, run_binary, temp_dir};

async fn record(at: &str, service: &str) -> AuditRecord {
    let config = files::load_config(&root().join("examples/gate/gate.yaml")).unwrap();
    let gate = Gate {
        config,
        rules: rules::defaults().unwrap(),
        prometheus: None,
        cost_explorer: None,
    };
    let mut d = gate
        .evaluate(
            None,
            "2026-02-21T00:00:00Z".parse::<Timestamp>().unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
    d.service = service.to_string();
    AuditRecord::new(&d, "cli", "text", "rules", at.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_append_whole_lines() {
    let dir = temp_dir("audit");
    let sink = Arc::new(JsonLinesAudit::new(&dir));
    let now = Timestamp::now();
    let path = dir.join(audit::file_name(now));
    std::fs::write(&path, "{\"kept\":true}\n").unwrap();
    let rec = Arc::new(record(&now.to_string(), "web").await);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let sink = sink.clone();
            let mut rec = (*rec).clone();
            rec.service = format!("svc-{i}");
            std::thread::spawn(move || {
                for _ in 0..40 {
                    sink.append(&rec).unwrap();
                }
            })
        })
        .collect();
    // Two processes append to the same file at the same time as the threads.
    let procs: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_autoguardrails"))
                .args([
                    "gate",
                    "--config",
                    &root().join("examples/gate/gate.yaml").display().to_string(),
                    "--at",
                    "2026-02-21T00:00:00Z",
                    "--audit-dir",
                    &dir.display().to_string(),
                ])
                .output()
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for p in procs {
        assert_eq!(p.unwrap().status.code(), Some(1));
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("{\"kept\":true}\n"), "never truncated");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 8 * 40 + 2, "threads and both processes");
    for line in &lines[1..] {
        let r: AuditRecord = serde_json::from_str(line).expect("every line is a whole record");
        assert_eq!(r.verdict, "DELAY");
    }
    let listing = audit::read(
        &dir,
        &AuditQuery {
            service: Some("svc-3".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(listing.records.len(), 40);
    assert_eq!(
        listing.unreadable.len(),
        1,
        "the foreign line is reported, not fatal"
    );
}

#[tokio::test]
async fn days_rotate_in_utc_and_filters_apply() {
    let dir = temp_dir("audit-rotate");
    let sink = JsonLinesAudit::new(&dir);
    let a = sink
        .append(&record("2026-03-01T23:59:59Z", "web").await)
        .unwrap();
    let b = sink
        .append(&record("2026-03-02T00:00:00Z", "web").await)
        .unwrap();
    let c = sink
        .append(&record("2026-03-02T01:00:00+05:00", "api").await)
        .unwrap();
    assert!(a.ends_with("decisions-2026-03-01.jsonl"));
    assert!(b.ends_with("decisions-2026-03-02.jsonl"));
    assert!(
        c.ends_with("decisions-2026-03-01.jsonl"),
        "01:00+05:00 is 20:00 UTC the day before"
    );
    let all = audit::read(&dir, &AuditQuery::default()).unwrap();
    assert_eq!(all.records.len(), 3);
    assert!(
        all.records
            .windows(2)
            .all(|w| w[0].recorded_at <= w[1].recorded_at)
    );
    let since = audit::read(
        &dir,
        &AuditQuery {
            since: Some("2026-03-02T00:00:00Z".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(since.records.len(), 1);
    let last = audit::read(
        &dir,
        &AuditQuery {
            limit: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(last.records.len(), 2);
    assert_eq!(
        last.records[1].recorded_at.to_string(),
        "2026-03-02T00:00:00Z"
    );
    // `gate audit` through the binary.
    let (code, out, _) = run_binary(
        &[
            "gate",
            "audit",
            "--audit-dir",
            &dir.display().to_string(),
            "--service",
            "api",
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("1 record(s)"), "{out}");
}

#[tokio::test]
async fn an_unwritable_audit_directory_never_allows() {
    let dir = temp_dir("audit-ro");
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, "file").unwrap();
    let (code, out, err) = run_binary(
        &[
            "gate",
            "--config",
            &root().join("examples/gate/gate.yaml").display().to_string(),
            "--at",
            "2026-02-21T00:00:00Z",
            "--audit-dir",
            &blocker.join("audit").display().to_string(),
            "--output",
            "json",
            "simulate",
            "--set",
            "errorBudgetPct=80",
        ],
        &[],
    );
    let doc: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(doc["verdict"], "DELAY");
    assert_eq!(doc["reasonCode"], "AuditUnavailable");
    assert_eq!(code, 1);
}
