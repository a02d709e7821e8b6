//! The directory scan on several threads: the same usage as one thread, whatever the timing,
//! and the first failing file (in file order) stops the scan with its own error.

use std::io::Write as _;
use std::path::Path;

use autoguardrails::analyze::files::{self, FilesError};
use autoguardrails::analyze::record::PrincipalMatcher;
use autoguardrails::analyze::usage::{Usage, Window};
use autoguardrails::principal::PrincipalArn;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;

use super::{ROLE, examples, tempdir};

fn usage(window: Option<Window>) -> Usage {
    Usage::new(
        PrincipalMatcher::new(PrincipalArn::parse(ROLE).unwrap()),
        window,
    )
}

fn scan(
    dir: &Path,
    workers: usize,
    window: Option<Window>,
) -> Result<(Usage, Vec<u64>), FilesError> {
    let mut u = usage(window);
    let mut seen = Vec::new();
    files::read_directory_with(dir, &mut u, &mut |done, _| seen.push(done), workers)?;
    Ok((u, seen))
}

/// Log files where the same second, event and group recur across files (ties decide the sample
/// event id), files of very different sizes, other principals, failed calls and resources.
fn write_logs(dir: &Path, files: usize) {
    let callers = [
        "arn:aws:sts::111122223333:assumed-role/ci-deployer/s1",
        "arn:aws:sts::111122223333:assumed-role/CI-DEPLOYER/s2",
        "arn:aws:sts::111122223333:assumed-role/other/s3",
        "arn:aws:iam::111122223333:user/alice",
    ];
    let events = [
        ("s3.amazonaws.com", "GetObject"),
        ("s3.amazonaws.com", "PutObject"),
        ("ec2.amazonaws.com", "DescribeInstances"),
        ("lambda.amazonaws.com", "Invoke"),
    ];
    for f in 0..files {
        let records: Vec<_> = (0..(1 + (f * 37) % 300))
            .map(|i| {
                let caller = callers[(f + i) % callers.len()];
                let (source, name) = events[(f * 3 + i) % events.len()];
                let role = caller.split('/').nth(1).unwrap_or_default();
                json!({
                    "eventTime": format!("2025-03-0{}T10:00:{:02}Z", 1 + f % 3, i % 7),
                    "eventSource": source,
                    "eventName": name,
                    "awsRegion": if f % 2 == 0 { "us-east-1" } else { "eu-west-1" },
                    "eventID": format!("ev-{f}-{i}"),
                    "errorCode": if i % 11 == 0 { "AccessDenied" } else { "" },
                    "userIdentity": {
                        "type": "AssumedRole",
                        "arn": caller,
                        "sessionContext": {"sessionIssuer": {
                            "arn": format!("arn:aws:iam::111122223333:role/{role}")
                        }}
                    },
                    "resources": [{"type": "AWS::S3::Object", "ARN": format!("arn:aws:s3:::b{}/k{i}", (f * 7 + i) % 199)}],
                    "requestParameters": {"roleArn": format!("arn:aws:iam::111122223333:role/r{}", f % 40)}
                })
            })
            .collect();
        let day = dir.join(format!("2025/03/{:02}", 1 + f % 3));
        std::fs::create_dir_all(&day).unwrap();
        let file = std::fs::File::create(day.join(format!("log-{f:04}.json.gz"))).unwrap();
        let mut gz = GzEncoder::new(file, Compression::fast());
        gz.write_all(json!({ "Records": records }).to_string().as_bytes())
            .unwrap();
        gz.finish().unwrap();
    }
}

#[test]
fn several_threads_give_the_usage_of_one() {
    let dir = tempdir("scan-threads");
    write_logs(&dir, 120);
    let window = Some(Window {
        start: "2025-03-01T10:00:01Z".into(),
        end: "2025-03-03T10:00:05Z".into(),
    });
    for window in [None, window] {
        let (one, progress) = scan(&dir, 1, window.clone()).unwrap();
        assert_eq!(progress, (1..=120).collect::<Vec<u64>>());
        assert!(one.counters.events_matched > 0);
        assert_eq!(one.counters.events_outside_window > 0, window.is_some());
        assert!(
            one.groups.values().any(|g| g.resources.overflow),
            "{:?}",
            one.groups
                .values()
                .map(|g| (g.count, g.resources.values.len()))
                .collect::<Vec<_>>()
        );
        for workers in [2, 3, 8] {
            for _ in 0..2 {
                let (many, progress) = scan(&dir, workers, window.clone()).unwrap();
                assert_eq!(many.counters, one.counters, "{workers} workers");
                assert_eq!(progress, (1..=120).collect::<Vec<u64>>(), "in file order");
                assert_eq!(
                    many.groups.keys().collect::<Vec<_>>(),
                    one.groups.keys().collect::<Vec<_>>()
                );
                for (key, g) in &one.groups {
                    let m = &many.groups[key];
                    assert_eq!(
                        (m.count, &m.first_seen, &m.last_seen, &m.sample_event_id),
                        (g.count, &g.first_seen, &g.last_seen, &g.sample_event_id),
                        "{key:?} with {workers} workers"
                    );
                    assert_eq!(
                        (&m.regions, &m.origins, &m.error_codes, m.unnamed),
                        (&g.regions, &g.origins, &g.error_codes, g.unnamed)
                    );
                    assert_eq!(m.resources.overflow, g.resources.overflow, "{key:?}");
                    if !g.resources.overflow {
                        assert_eq!(m.resources, g.resources, "{key:?}");
                    }
                    assert_eq!(m.hints.passed_roles.overflow, g.hints.passed_roles.overflow);
                    if !g.hints.passed_roles.overflow {
                        assert_eq!(m.hints, g.hints, "{key:?}");
                    }
                }
            }
        }
    }
    // The bundled logs too.
    let (one, _) = scan(&examples().join("logs"), 1, None).unwrap();
    let (two, _) = scan(&examples().join("logs"), 2, None).unwrap();
    assert!(one.counters.events_matched > 0);
    assert_eq!((one.counters, one.groups), (two.counters, two.groups));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_first_failing_file_stops_the_scan_with_its_error() {
    let dir = tempdir("scan-fail");
    write_logs(&dir, 60);
    // Two broken files: a truncated gzip stream (early in the order) and a document that is not
    // CloudTrail's (later).
    let early = dir.join("2025/03/02/log-0013.json.gz");
    let bytes = std::fs::read(&early).unwrap();
    std::fs::write(&early, &bytes[..bytes.len() / 2]).unwrap();
    let late = dir.join("2025/03/03/log-0050.json.gz");
    let mut gz = GzEncoder::new(std::fs::File::create(&late).unwrap(), Compression::fast());
    gz.write_all(br#"{"NotRecords": []}"#).unwrap();
    gz.finish().unwrap();
    for workers in [1, 2, 4, 8] {
        let err = scan(&dir, workers, None).expect_err("the scan fails");
        assert!(
            matches!(&err, FilesError::Invalid { path, .. } if path.ends_with("log-0013.json.gz")),
            "{workers} workers: {err}"
        );
    }
    std::fs::remove_file(&early).unwrap();
    for workers in [1, 4] {
        let err = scan(&dir, workers, None).expect_err("the scan fails");
        assert!(err.to_string().contains("log-0050.json.gz"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
