//! The velocity adapter: holds the estimator behind a mutex for the signal handlers, reads the
//! price file, and keeps the estimator's state in a JSON file across restarts (written
//! atomically at most every `saveInterval`, and at shutdown; decision 173). It must not
//! evaluate policies (intake does) or answer HTTP (the endpoints do).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::estimator::{Burn, Estimator, Observation, Settings, State};
use super::event::{self, EventError};
use super::pricing::{MAX_PRICE_FILE_BYTES, PriceTable};

/// The largest state file read back (a full state of `maxEvents` ids is a few tens of MiB).
pub const MAX_STATE_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Config file section `velocity`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VelocitySettings {
    /// Read CloudTrail API call events on `/events` and `/sns` (off: they are answered as
    /// unsupported events, as before).
    pub enabled: bool,
    /// Only what was started within this long counts (`1h`).
    pub window: SignedDuration,
    /// The burn is projected over this long to give a signal's impact (`1h`).
    pub horizon: SignedDuration,
    /// A signal is emitted when the projected spend reaches this (USD), again at each doubling.
    pub signal_at_usd: f64,
    /// Event ids remembered for idempotency.
    pub max_events: usize,
    /// A price snapshot of the bundled format replacing the bundled one (a refreshed snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_file: Option<PathBuf>,
    /// Where the state is kept across restarts; without it the state starts empty each time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
    /// Write the state file at most this often when it changed (`5s`).
    pub save_interval: SignedDuration,
}

impl Default for VelocitySettings {
    fn default() -> Self {
        let core = Settings::default();
        VelocitySettings {
            enabled: false,
            window: core.window,
            horizon: core.horizon,
            signal_at_usd: core.signal_at_usd,
            max_events: core.max_events,
            price_file: None,
            state_file: None,
            save_interval: SignedDuration::from_secs(5),
        }
    }
}

/// Why the tracker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// A setting is out of range.
    #[error("invalid velocity setting {field}: {message}")]
    Setting {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The price file is unreadable or invalid.
    #[error("velocity price file {path}: {message}")]
    Prices {
        /// The file (or `bundled`).
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl VelocitySettings {
    /// Checks ranges (called by config validation and by [`Tracker::start`]).
    pub fn validate(&self) -> Result<(), TrackerError> {
        let positive = |field: &'static str, value: SignedDuration| {
            if value <= SignedDuration::ZERO || value > SignedDuration::from_hours(24 * 7) {
                Err(TrackerError::Setting {
                    field,
                    message: format!("{value:#} must be more than 0 and at most 168h"),
                })
            } else {
                Ok(())
            }
        };
        positive("velocity.window", self.window)?;
        positive("velocity.horizon", self.horizon)?;
        positive("velocity.saveInterval", self.save_interval)?;
        if !self.signal_at_usd.is_finite() || self.signal_at_usd <= 0.0 {
            return Err(TrackerError::Setting {
                field: "velocity.signalAtUsd",
                message: format!("{} must be a positive amount", self.signal_at_usd),
            });
        }
        if !(1_000..=10_000_000).contains(&self.max_events) {
            return Err(TrackerError::Setting {
                field: "velocity.maxEvents",
                message: format!("{} must be between 1000 and 10000000", self.max_events),
            });
        }
        Ok(())
    }

    /// The estimator's settings.
    pub fn core(&self) -> Settings {
        Settings {
            window: self.window,
            horizon: self.horizon,
            signal_at_usd: self.signal_at_usd,
            max_events: self.max_events,
            ..Settings::default()
        }
    }

    /// The price table: the configured file, else the bundled snapshot.
    pub fn prices(&self) -> Result<PriceTable, TrackerError> {
        match &self.price_file {
            None => PriceTable::bundled().map_err(|e| TrackerError::Prices {
                path: "bundled".into(),
                message: e.to_string(),
            }),
            Some(path) => {
                let error = |message: String| TrackerError::Prices {
                    path: path.display().to_string(),
                    message,
                };
                let size = std::fs::metadata(path)
                    .map_err(|e| error(e.to_string()))?
                    .len();
                if size > MAX_PRICE_FILE_BYTES as u64 {
                    return Err(error(format!("{size} bytes is more than the limit")));
                }
                let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
                PriceTable::parse(&text).map_err(|e| error(e.to_string()))
            }
        }
    }
}

/// What the handlers get back for one CloudTrail event.
pub type Tracked = Result<Observation, EventError>;

/// The file the state is kept in.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateFile {
    version: u32,
    saved_at: Timestamp,
    state: State,
}

const STATE_VERSION: u32 = 1;

/// The estimator, shared by the signal handlers.
pub struct Tracker {
    estimator: Mutex<Estimator>,
    state_file: Option<PathBuf>,
    dirty: AtomicBool,
    save_lock: Mutex<()>,
    /// Whether this replica counts events (the leader; decision 177). A standby answers them
    /// with a retry, so every event is counted by one estimator.
    counting: AtomicBool,
}

impl Tracker {
    /// Builds the estimator from the settings and, when a state file is configured and
    /// readable, the state it holds. A state file that cannot be read is set aside
    /// (`<file>.unreadable`) and reported in the log: the estimator starts empty rather than
    /// the controller not starting (release must keep working).
    pub fn start(settings: &VelocitySettings, now: Timestamp) -> Result<Tracker, TrackerError> {
        settings.validate()?;
        let prices = settings.prices()?;
        let state = settings
            .state_file
            .as_deref()
            .and_then(load_state)
            .unwrap_or_default();
        tracing::info!(
            prices = prices.len(),
            snapshot = prices.date(),
            restored_events = state.events(),
            "velocity estimator ready"
        );
        Ok(Tracker {
            estimator: Mutex::new(Estimator::restore(settings.core(), prices, state, now)),
            state_file: settings.state_file.clone(),
            dirty: AtomicBool::new(false),
            save_lock: Mutex::new(()),
            counting: AtomicBool::new(true),
        })
    }

    /// A tracker over a given estimator (tests and benchmarks).
    pub fn with_estimator(estimator: Estimator, state_file: Option<PathBuf>) -> Tracker {
        Tracker {
            estimator: Mutex::new(estimator),
            state_file,
            dirty: AtomicBool::new(false),
            save_lock: Mutex::new(()),
            counting: AtomicBool::new(true),
        }
    }

    /// Whether this replica counts events now.
    pub fn is_counting(&self) -> bool {
        self.counting.load(Ordering::Acquire)
    }

    /// Stops counting (this replica stands by): events are answered with a retry. Blocking I/O
    /// when a state file is set (the state is saved first): call it from a blocking task.
    pub fn stand_by(&self, now: Timestamp) {
        if self.counting.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.save_if_changed(now) {
                tracing::error!(error = %e, "cannot write the velocity state file");
            }
            tracing::info!("velocity: standing by; events are counted by the leader");
        }
    }

    /// Starts counting (this replica leads). With a state file, the state is read back from it
    /// first, so a replica that takes over continues from what the previous leader saved when
    /// the file is on storage both share (docs/signals.md). Blocking I/O: call it from a
    /// blocking task.
    pub fn lead(&self, now: Timestamp) {
        if self.counting.load(Ordering::Acquire) {
            return;
        }
        if let Some(state) = self.state_file.as_deref().and_then(load_state) {
            let mut estimator = self.estimator.lock().unwrap_or_else(|p| p.into_inner());
            let replaced = Estimator::restore(
                estimator.settings().clone(),
                estimator.prices().clone(),
                state,
                now,
            );
            *estimator = replaced;
        }
        self.counting.store(true, Ordering::Release);
        tracing::info!("velocity: leading; counting events");
    }

    /// Reads and counts one CloudTrail event.
    pub fn observe(&self, text: &str, now: Timestamp) -> Tracked {
        let call = event::parse_event(text)?;
        let observation = self
            .estimator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(&call, now);
        if !matches!(observation.outcome, super::Outcome::Duplicate) {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(observation)
    }

    /// Intake took the signal: it is not handed over again.
    pub fn acknowledge(&self, signal_id: &str) {
        self.estimator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acknowledge(signal_id);
        self.dirty.store(true, Ordering::Release);
    }

    /// Every principal's burn, highest first.
    pub fn burns(&self) -> Vec<Burn> {
        self.estimator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .burns()
    }

    /// The price snapshot's date.
    pub fn snapshot_date(&self) -> String {
        self.estimator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prices()
            .date()
            .to_string()
    }

    /// Writes the state file when the state changed since the last write. Blocking I/O: call
    /// it from a blocking task.
    pub fn save_if_changed(&self, now: Timestamp) -> std::io::Result<bool> {
        let Some(path) = &self.state_file else {
            return Ok(false);
        };
        let _one_writer = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let file = {
            let mut estimator = self.estimator.lock().unwrap_or_else(|p| p.into_inner());
            estimator.prune(now);
            StateFile {
                version: STATE_VERSION,
                saved_at: now,
                state: estimator.state().clone(),
            }
        };
        let result = write_atomically(path, &file);
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result.map(|()| true)
    }
}

fn write_atomically(path: &Path, file: &StateFile) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        use std::io::Write as _;
        let mut out = std::fs::File::create(&temporary)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
    }
    std::fs::rename(&temporary, path)
}

fn load_state(path: &Path) -> Option<State> {
    let read = || -> Result<Option<State>, String> {
        let size = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if size > MAX_STATE_FILE_BYTES {
            return Err(format!("{size} bytes is more than {MAX_STATE_FILE_BYTES}"));
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if file.version != STATE_VERSION {
            return Err(format!("version {} is not {STATE_VERSION}", file.version));
        }
        Ok(Some(file.state))
    };
    match read() {
        Ok(None) => {
            tracing::info!(path = %path.display(), "no velocity state file yet; starting empty");
            None
        }
        Ok(Some(state)) => Some(state),
        Err(error) => {
            let mut aside = path.as_os_str().to_owned();
            aside.push(".unreadable");
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::error!(
                path = %path.display(),
                error = %error,
                moved_aside = moved,
                "VELOCITY STATE FILE UNREADABLE: starting from an empty state; burns started \
                 before this restart are not counted"
            );
            None
        }
    }
}
