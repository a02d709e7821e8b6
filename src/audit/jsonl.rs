//! JSON lines: the one durable line writer (open with `O_APPEND`, one `write` under an exclusive
//! advisory lock, then `fsync`; never truncate or rewrite), used by the gate's decision log and by
//! the audit sink for people who ship logs instead of querying a table. It must not decide what a
//! record says.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Appended, AuditError, AuditRecord, AuditSink};

/// Appends `lines` (each ending in `\n`) to `path` in one write, creating the parent directory.
pub fn append_lines(path: &Path, lines: &[u8]) -> Result<(), AuditError> {
    let werr = |source: std::io::Error| AuditError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(werr)?;
    }
    let mut file: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(werr)?;
    // O_APPEND makes every write land at the end; the lock keeps a writer on a filesystem
    // without atomic appends (or a short write) from interleaving with another.
    file.lock().map_err(werr)?;
    let written = file.write_all(lines).and_then(|_| file.sync_data());
    let unlocked = file.unlock();
    written.map_err(werr)?;
    unlocked.map_err(werr)?;
    Ok(())
}

/// Encodes `value` as one JSON line.
pub fn line<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, AuditError> {
    let mut line = serde_json::to_vec(value).map_err(|e| AuditError::Encode(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

/// Where the JSON-lines sink writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The process's standard output (one line per record, for a log shipper).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

impl Destination {
    /// `-` is stdout; anything else a file path.
    pub fn parse(text: &str) -> Destination {
        if text == "-" {
            Destination::Stdout
        } else {
            Destination::File(PathBuf::from(text))
        }
    }
}

/// The JSON-lines audit sink.
#[derive(Clone, Debug)]
pub struct JsonLinesSink {
    destination: Destination,
}

impl JsonLinesSink {
    /// A sink writing to `destination`.
    pub fn new(destination: Destination) -> JsonLinesSink {
        JsonLinesSink { destination }
    }
}

#[async_trait]
impl AuditSink for JsonLinesSink {
    async fn append(&self, records: &[AuditRecord]) -> Result<Appended, AuditError> {
        let mut lines = Vec::new();
        for record in records {
            lines.extend(line(record)?);
        }
        match &self.destination {
            Destination::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&lines)
                    .and_then(|_| out.flush())
                    .map_err(|source| AuditError::Write {
                        path: "stdout".into(),
                        source,
                    })?;
            }
            Destination::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || append_lines(&path, &lines))
                    .await
                    .map_err(|e| AuditError::Encode(format!("writer task failed: {e}")))??;
            }
        }
        Ok(Appended {
            written: records.len(),
            duplicates: 0,
        })
    }

    fn name(&self) -> &'static str {
        "jsonl"
    }
}

/// Reads every record of a JSON-lines file; unreadable lines are returned by number.
pub fn read_records(path: &Path) -> Result<(Vec<AuditRecord>, Vec<usize>), AuditError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuditError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for (i, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(text) {
            Ok(r) => records.push(r),
            Err(_) => unreadable.push(i + 1),
        }
    }
    Ok((records, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, CHANNEL_CONTROLLER};

    #[tokio::test]
    async fn file_sink_appends_lines_that_read_back() {
        let dir = std::env::temp_dir().join(format!("agr-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/audit.jsonl");
        let sink = JsonLinesSink::new(Destination::File(path.clone()));
        let record = AuditRecord {
            id: "u/0000000000".into(),
            recorded_at: jiff::Timestamp::UNIX_EPOCH,
            sequence: 0,
            cluster: "c".into(),
            quarantine: None,
            policy: None,
            principals: Vec::new(),
            event: "SignalUnmatched".into(),
            actor: Actor {
                name: "controller".into(),
                verified: false,
                channel: CHANNEL_CONTROLLER.into(),
            },
            message: "m".into(),
            mode: None,
            signal: None,
            request_ids: Vec::new(),
        };
        sink.append(std::slice::from_ref(&record))
            .await
            .expect("append");
        sink.append(std::slice::from_ref(&record))
            .await
            .expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"not json\n"))
            .expect("garbage");
        let (records, unreadable) = read_records(&path).expect("read");
        assert_eq!(records, vec![record.clone(), record]);
        assert_eq!(unreadable, vec![3]);
        assert_eq!(Destination::parse("-"), Destination::Stdout);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
