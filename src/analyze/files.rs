//! Trail log files from a local directory (`--from-files`), and the one routine every file-based
//! source shares: decompress a log document (gzip or plain JSON) into a reused buffer of bounded
//! size and stream its records into the usage. Memory is one document at a time. It must not
//! decide anything about the records.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use super::proposal::SourceReport;
use super::record::for_each_record;
use super::usage::{Origin, Usage};

/// Largest decompressed log document accepted (CloudTrail files are far smaller).
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024 * 1024;

/// Why log files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A file or directory could not be read.
    #[error("failed to read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// A file is not a CloudTrail log document.
    #[error("{path} is not a CloudTrail log file: {message}")]
    Invalid {
        /// The path or key.
        path: String,
        /// Why.
        message: String,
    },
    /// A document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("{path} decompresses to more than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// The path or key.
        path: String,
    },
    /// The directory holds no log file.
    #[error("no CloudTrail log files (*.json.gz, *.json) under {path}")]
    Empty {
        /// The directory.
        path: String,
    },
}

impl FilesError {
    /// The category used for metric labels and messages.
    pub fn category(&self) -> &'static str {
        match self {
            FilesError::Io { .. } => "Io",
            FilesError::Invalid { .. } | FilesError::TooLarge { .. } => "InvalidLogFile",
            FilesError::Empty { .. } => "NoLogFiles",
        }
    }
}

/// A writer into the document buffer that refuses to grow past the limit.
struct Bounded<'a> {
    buffer: &'a mut Vec<u8>,
}

impl Write for Bounded<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + data.len() > MAX_DOCUMENT_BYTES {
            return Err(std::io::Error::other("document too large"));
        }
        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streaming decompression of one object: feed compressed chunks, then [`Document::finish`].
pub struct Document<'a> {
    name: String,
    gzip: Option<flate2::write::MultiGzDecoder<Bounded<'a>>>,
    plain: Option<Bounded<'a>>,
}

impl<'a> Document<'a> {
    /// Starts a document; `buffer` is cleared and reused.
    pub fn new(name: &str, gzip: bool, buffer: &'a mut Vec<u8>) -> Document<'a> {
        buffer.clear();
        let sink = Bounded { buffer };
        if gzip {
            Document {
                name: name.to_string(),
                gzip: Some(flate2::write::MultiGzDecoder::new(sink)),
                plain: None,
            }
        } else {
            Document {
                name: name.to_string(),
                gzip: None,
                plain: Some(sink),
            }
        }
    }

    fn error(&self, e: std::io::Error) -> FilesError {
        if e.to_string().contains("too large") {
            FilesError::TooLarge {
                path: self.name.clone(),
            }
        } else {
            FilesError::Invalid {
                path: self.name.clone(),
                message: e.to_string(),
            }
        }
    }

    /// Feeds a chunk of the (possibly compressed) object.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), FilesError> {
        let result = match (&mut self.gzip, &mut self.plain) {
            (Some(g), _) => g.write_all(chunk),
            (None, Some(p)) => p.write_all(chunk),
            (None, None) => Ok(()),
        };
        result.map_err(|e| self.error(e))
    }

    /// Ends the object and streams its records into `usage`; returns the records read.
    pub fn finish(mut self, usage: &mut Usage, origin: Origin) -> Result<u64, FilesError> {
        let name = self.name.clone();
        let buffer: &mut Vec<u8> = match (self.gzip.take(), self.plain.take()) {
            (Some(g), _) => g.finish().map_err(|e| self.error(e))?.buffer,
            (None, Some(p)) => p.buffer,
            (None, None) => return Ok(0),
        };
        for_each_record(buffer, |record| usage.add_record(&record, origin)).map_err(|e| {
            FilesError::Invalid {
                path: name,
                message: e.to_string(),
            }
        })
    }
}

/// Whether a name is a trail log file (digest files are skipped).
pub fn is_log_file(name: &str) -> bool {
    (name.ends_with(".json.gz") || name.ends_with(".json")) && !name.contains("CloudTrail-Digest")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FilesError> {
    let io = |e: std::io::Error| FilesError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_log_file(&path.to_string_lossy()) {
            out.push(path);
        }
    }
    Ok(())
}

/// Worker threads a directory scan uses by default: the cores available, at most 8.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Reads one log file into a usage of its own.
fn read_file(
    path: &Path,
    usage: &mut Usage,
    buffer: &mut Vec<u8>,
    chunk: &mut [u8],
) -> Result<(), FilesError> {
    let name = path.display().to_string();
    let io = |e: std::io::Error| FilesError::Io {
        path: name.clone(),
        message: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut document = Document::new(&name, name.ends_with(".gz"), buffer);
    loop {
        let n = file.read(chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        document.feed(&chunk[..n])?;
    }
    document.finish(usage, Origin::Files)?;
    Ok(())
}

/// Reads every log file under `dir` (sorted, recursively) into `usage`, on
/// [`default_workers`] threads. Any unreadable or invalid file is an error: a partial scan
/// never yields a smaller policy.
pub fn read_directory(
    dir: &Path,
    usage: &mut Usage,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SourceReport, FilesError> {
    read_directory_with(dir, usage, progress, default_workers())
}

/// As [`read_directory`], on `workers` threads (at least one). Each file is read into a usage
/// of its own and the results are merged in file order, so the outcome does not depend on the
/// number of threads or their timing (decision 129); the error reported is that of the first
/// failing file in that order. Memory: one document per worker plus a few finished files
/// waiting for their turn.
pub fn read_directory_with(
    dir: &Path,
    usage: &mut Usage,
    progress: &mut dyn FnMut(u64, u64),
    workers: usize,
) -> Result<SourceReport, FilesError> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    if files.is_empty() {
        return Err(FilesError::Empty {
            path: dir.display().to_string(),
        });
    }
    let workers = workers.clamp(1, files.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let template = usage.fork();
    let outcome = std::thread::scope(|scope| {
        // Bounded, and owned by this closure: on an early return the receiver is dropped and a
        // worker waiting to send stops instead of blocking the end of the scope.
        let (sender, receiver) =
            mpsc::sync_channel::<(usize, Result<Usage, FilesError>)>(workers * 2);
        for _ in 0..workers {
            let sender = sender.clone();
            let (files, next, failed) = (&files, &next, &failed);
            let mut part = template.fork();
            scope.spawn(move || {
                let mut buffer = Vec::new();
                let mut chunk = vec![0u8; 256 * 1024];
                while !failed.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(index) else { break };
                    let result = read_file(path, &mut part, &mut buffer, &mut chunk);
                    let fresh = part.fork();
                    let done = std::mem::replace(&mut part, fresh);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if sender.send((index, result.map(|()| done))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        // Merge in file order; files are claimed in order, so every file before a failed one
        // was claimed and arrives.
        let mut waiting = BTreeMap::new();
        let mut merged = 0usize;
        for (index, result) in receiver.iter() {
            waiting.insert(index, result);
            while let Some(result) = waiting.remove(&merged) {
                usage.merge(result?);
                merged += 1;
                progress(merged as u64, usage.counters.events_read);
            }
        }
        if merged == files.len() {
            Ok(())
        } else {
            Err(FilesError::Io {
                path: dir.display().to_string(),
                message: format!("only {merged} of {} files were read", files.len()),
            })
        }
    });
    outcome?;
    Ok(SourceReport {
        origin: Origin::Files,
        detail: dir.display().to_string(),
        regions: usage.counters.regions_seen.iter().cloned().collect(),
        units_read: files.len() as u64,
    })
}
