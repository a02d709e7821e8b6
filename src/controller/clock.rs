//! The clock signal intake evaluates policies with (exception windows, cooldowns): the system
//! clock, or, in debug builds only, an instant read from the file named by
//! [`TEST_CLOCK_FILE_VARIABLE`] so the end-to-end tests can put the real binary at any instant
//! (a daylight-saving change) without waiting for it (decision 203), and the instant `/sns`
//! checks a message's age and its certificate's validity at, so a message AWS signed years ago
//! can be verified through the binary (decision 250). A release build refuses to start with the
//! variable set. It must not be used for anything but policy evaluation and those SNS checks.

use std::path::PathBuf;

use jiff::Timestamp;

/// The environment variable naming the test clock file (one RFC 3339 instant).
pub const TEST_CLOCK_FILE_VARIABLE: &str = "AUTOGUARDRAILS_TEST_CLOCK_FILE";

/// Why the evaluation clock cannot be set up or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The test clock was asked for in a release build.
    #[error(
        "{TEST_CLOCK_FILE_VARIABLE} is set, but the test clock exists for the test suite only and release builds refuse it: unset it"
    )]
    RefusedInRelease,
    /// The test clock file could not be read or holds no instant.
    #[error("test clock file {path}: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl ClockError {
    /// The category used for metric labels and logs.
    pub fn category(&self) -> &'static str {
        "Clock"
    }
}

/// Where intake takes `now` from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EvaluationClock {
    /// The system clock (production).
    #[default]
    System,
    /// The instant written in a file, read at every evaluation (debug builds, tests only).
    File(PathBuf),
}

impl EvaluationClock {
    /// The clock the environment asks for: [`EvaluationClock::System`] unless
    /// [`TEST_CLOCK_FILE_VARIABLE`] is set, which a release build refuses.
    pub fn from_env() -> Result<EvaluationClock, ClockError> {
        Self::from_setting(
            std::env::var_os(TEST_CLOCK_FILE_VARIABLE),
            cfg!(debug_assertions),
        )
    }

    fn from_setting(
        file: Option<std::ffi::OsString>,
        debug_build: bool,
    ) -> Result<EvaluationClock, ClockError> {
        match file {
            None => Ok(EvaluationClock::System),
            Some(_) if !debug_build => Err(ClockError::RefusedInRelease),
            Some(path) => Ok(EvaluationClock::File(PathBuf::from(path))),
        }
    }

    /// The evaluation instant. A test clock that cannot be read is an error, never the system
    /// time: a signal evaluated at the wrong instant could pass an exception window.
    pub fn now(&self) -> Result<Timestamp, ClockError> {
        match self {
            EvaluationClock::System => Ok(Timestamp::now()),
            EvaluationClock::File(path) => {
                let unreadable = |message: String| ClockError::Unreadable {
                    path: path.display().to_string(),
                    message,
                };
                let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
                text.trim()
                    .parse::<Timestamp>()
                    .map_err(|e| unreadable(format!("not an RFC 3339 instant: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_builds_refuse_the_test_clock() {
        assert_eq!(
            EvaluationClock::from_setting(Some("/tmp/clock".into()), false),
            Err(ClockError::RefusedInRelease)
        );
        assert_eq!(
            EvaluationClock::from_setting(None, false),
            Ok(EvaluationClock::System)
        );
        assert_eq!(
            EvaluationClock::from_setting(Some("/tmp/clock".into()), true),
            Ok(EvaluationClock::File("/tmp/clock".into()))
        );
    }

    #[test]
    fn the_file_clock_reads_every_time_and_never_falls_back() {
        let dir = std::env::temp_dir().join(format!("agr-clock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("now");
        let clock = EvaluationClock::File(path.clone());
        assert!(matches!(clock.now(), Err(ClockError::Unreadable { .. })));
        std::fs::write(&path, "2026-03-29T01:00:00Z\n").unwrap();
        assert_eq!(clock.now(), Ok("2026-03-29T01:00:00Z".parse().unwrap()));
        std::fs::write(&path, "2026-10-25T00:30:00Z").unwrap();
        assert_eq!(clock.now(), Ok("2026-10-25T00:30:00Z".parse().unwrap()));
        std::fs::write(&path, "yesterday").unwrap();
        let error = clock.now().unwrap_err().to_string();
        assert!(error.contains("not an RFC 3339 instant"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
