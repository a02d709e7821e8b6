//! Weekly exception windows: whether an instant lies in a window that opens on listed days at a
//! local time in an IANA time zone. Pure: no clock reads and no file access (the time zone
//! database is the one compiled into the binary, decision 201); the caller passes `now`.
//!
//! Boundaries inside daylight-saving changes (decision 202): a window of day D opens at the first
//! instant at which the local clock of day D shows `start` or a later time, and closes at the first
//! instant at which it shows `end` or a later time (`24:00`: the first instant of day D+1). So a
//! boundary in a skipped hour is the moment the clocks jump forward, and a boundary in a repeated
//! hour is its first occurrence. A window is never open for an instant it would not cover when read
//! off a wall clock that only moves forward.

use std::sync::LazyLock;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};
use jiff::{Timestamp, ToSpan};

use crate::controller::crd::{Weekday, WeeklyWindow};

/// The time zone database compiled into the binary: every replica, `simulate` and the tests read
/// the same rules whatever the host or image carries.
static DATABASE: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// Why a weekly window cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The zone is not in the time zone database.
    #[error("unknown time zone {zone:?} (use an IANA name such as Europe/Berlin or UTC)")]
    UnknownTimeZone {
        /// The name given.
        zone: String,
    },
    /// A time is not `HH:MM`.
    #[error("{text:?} is not a local time HH:MM (00:00 to 23:59; 24:00 only as end)")]
    Time {
        /// The text given.
        text: String,
    },
    /// The window closes at or before it opens.
    #[error("window end {end} must be after start {start} on the same day")]
    EndNotAfterStart {
        /// The start given.
        start: String,
        /// The end given.
        end: String,
    },
    /// No day listed.
    #[error("a weekly window lists at least one day")]
    NoDays,
}

impl ScheduleError {
    /// The category used for metric labels and Event reasons.
    pub fn category(&self) -> &'static str {
        "InvalidException"
    }
}

/// A weekly window, parsed: ready to be asked about instants.
#[derive(Debug, Clone)]
pub struct Weekly {
    days: [bool; 7],
    start: Time,
    /// `None` for `24:00`.
    end: Option<Time>,
    zone: TimeZone,
}

/// One occurrence of a window: from `opens` (included) to `closes` (excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// The first instant inside.
    pub opens: Timestamp,
    /// The first instant after.
    pub closes: Timestamp,
}

fn local_time(text: &str, allow_end_of_day: bool) -> Result<Option<Time>, ScheduleError> {
    let error = || ScheduleError::Time {
        text: text.to_string(),
    };
    if allow_end_of_day && text == "24:00" {
        return Ok(None);
    }
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return Err(error());
    }
    let number = |range: std::ops::Range<usize>| -> Result<i8, ScheduleError> {
        let part = &text[range];
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error());
        }
        part.parse::<i8>().map_err(|_| error())
    };
    let (hour, minute) = (number(0..2)?, number(3..5)?);
    Time::new(hour, minute, 0, 0).map(Some).map_err(|_| error())
}

fn day_index(day: Weekday) -> usize {
    match day {
        Weekday::Mon => 0,
        Weekday::Tue => 1,
        Weekday::Wed => 2,
        Weekday::Thu => 3,
        Weekday::Fri => 4,
        Weekday::Sat => 5,
        Weekday::Sun => 6,
    }
}

impl Weekly {
    /// Parses and checks a window: known zone, `HH:MM` times, end after start, a day.
    pub fn parse(window: &WeeklyWindow) -> Result<Weekly, ScheduleError> {
        let zone = DATABASE
            .get(&window.time_zone)
            .map_err(|_| ScheduleError::UnknownTimeZone {
                zone: window.time_zone.clone(),
            })?;
        let start = local_time(&window.start, false)?.ok_or_else(|| ScheduleError::Time {
            text: window.start.clone(),
        })?;
        let end = local_time(&window.end, true)?;
        if end.is_some_and(|end| end <= start) {
            return Err(ScheduleError::EndNotAfterStart {
                start: window.start.clone(),
                end: window.end.clone(),
            });
        }
        if window.days.is_empty() {
            return Err(ScheduleError::NoDays);
        }
        let mut days = [false; 7];
        for day in &window.days {
            days[day_index(*day)] = true;
        }
        Ok(Weekly {
            days,
            start,
            end,
            zone,
        })
    }

    /// The first instant at which the local clock of this zone shows `at` or a later time.
    fn first_instant_at_or_after(&self, at: DateTime) -> Option<Timestamp> {
        let ambiguous = self.zone.to_ambiguous_timestamp(at);
        match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset }
            | AmbiguousOffset::Fold { before: offset, .. } => offset.to_timestamp(at).ok(),
            AmbiguousOffset::Gap { after, .. } => {
                // `at` read with the later offset is an instant before the jump; the jump is the
                // zone's next transition after it, where the clock passes over `at`.
                let before_jump = after.to_timestamp(at).ok()?;
                self.zone
                    .following(before_jump)
                    .next()
                    .map(|transition| transition.timestamp())
            }
        }
    }

    /// The occurrence of the window on local date `date`, when the window opens that weekday.
    pub fn occurrence_on(&self, date: Date) -> Option<Occurrence> {
        let weekday = usize::try_from(date.weekday().to_monday_zero_offset()).ok()?;
        if !self.days.get(weekday).copied().unwrap_or(false) {
            return None;
        }
        let opens = self.first_instant_at_or_after(date.to_datetime(self.start))?;
        let closes = match self.end {
            Some(end) => self.first_instant_at_or_after(date.to_datetime(end))?,
            None => {
                self.first_instant_at_or_after(date.tomorrow().ok()?.to_datetime(Time::midnight()))?
            }
        };
        (opens < closes).then_some(Occurrence { opens, closes })
    }

    /// The occurrence covering `now` (start included, end excluded), if any. Looks at the local
    /// date of `now` and the days either side, so a window near a transition at midnight is
    /// still found.
    pub fn covering(&self, now: Timestamp) -> Option<Occurrence> {
        let today = now.to_zoned(self.zone.clone()).date();
        [-1_i64, 0, 1]
            .into_iter()
            .filter_map(|shift| today.checked_add(shift.days()).ok())
            .filter_map(|date| self.occurrence_on(date))
            .find(|o| o.opens <= now && now < o.closes)
    }

    /// The zone, for messages.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }
}

/// Every weekly window's problem, as `exceptions.weekly[i]: why`; empty when all are usable.
pub fn problems(windows: &[WeeklyWindow]) -> Vec<String> {
    windows
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            Weekly::parse(w)
                .err()
                .map(|e| format!("exceptions.weekly[{i}]: {e}"))
        })
        .collect()
}

/// A window as written, for messages: `Mon,Tue 08:00-20:00 Europe/Berlin`.
pub fn describe(window: &WeeklyWindow) -> String {
    let days: Vec<&str> = window
        .days
        .iter()
        .map(|d| match d {
            Weekday::Mon => "Mon",
            Weekday::Tue => "Tue",
            Weekday::Wed => "Wed",
            Weekday::Thu => "Thu",
            Weekday::Fri => "Fri",
            Weekday::Sat => "Sat",
            Weekday::Sun => "Sun",
        })
        .collect();
    format!(
        "{} {}-{} {}",
        days.join(","),
        window.start,
        window.end,
        window.time_zone
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[Weekday], start: &str, end: &str, zone: &str) -> WeeklyWindow {
        WeeklyWindow {
            days: days.to_vec(),
            start: start.into(),
            end: end.into(),
            time_zone: zone.into(),
            reason: String::new(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn weekly(days: &[Weekday], start: &str, end: &str, zone: &str) -> Weekly {
        Weekly::parse(&window(days, start, end, zone)).unwrap()
    }

    const WEEKDAYS: &[Weekday] = &[
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ];

    #[test]
    fn business_hours_in_berlin_follow_summer_and_winter_time() {
        let w = weekly(WEEKDAYS, "08:00", "20:00", "Europe/Berlin");
        // Winter (UTC+1): Tuesday 2026-01-13.
        assert!(w.covering(at("2026-01-13T06:59:59Z")).is_none());
        assert!(w.covering(at("2026-01-13T07:00:00Z")).is_some());
        assert!(w.covering(at("2026-01-13T18:59:59Z")).is_some());
        assert!(w.covering(at("2026-01-13T19:00:00Z")).is_none());
        // Summer (UTC+2): Tuesday 2026-07-14.
        assert!(w.covering(at("2026-07-14T05:59:59Z")).is_none());
        assert!(w.covering(at("2026-07-14T06:00:00Z")).is_some());
        assert!(w.covering(at("2026-07-14T17:59:59Z")).is_some());
        assert!(w.covering(at("2026-07-14T18:00:00Z")).is_none());
        // Saturday is not listed.
        assert!(w.covering(at("2026-07-18T10:00:00Z")).is_none());
        // The Monday after the spring change (2026-03-29) is already summer time.
        assert_eq!(
            w.covering(at("2026-03-30T06:00:00Z")),
            Some(Occurrence {
                opens: at("2026-03-30T06:00:00Z"),
                closes: at("2026-03-30T18:00:00Z")
            })
        );
        // The Monday after the autumn change (2026-10-25) is winter time again.
        assert!(w.covering(at("2026-10-26T06:30:00Z")).is_none());
        assert!(w.covering(at("2026-10-26T07:00:00Z")).is_some());
    }

    #[test]
    fn a_day_with_a_clock_change_keeps_its_local_hours() {
        // Sunday 2026-03-29 in Berlin has 23 hours; 01:00-05:00 local lasts three hours.
        let spring = weekly(&[Weekday::Sun], "01:00", "05:00", "Europe/Berlin");
        assert_eq!(
            spring.occurrence_on(Date::constant(2026, 3, 29)),
            Some(Occurrence {
                opens: at("2026-03-29T00:00:00Z"),
                closes: at("2026-03-29T03:00:00Z")
            })
        );
        // Sunday 2026-10-25 has 25 hours; 01:00-05:00 local lasts five hours.
        let autumn = weekly(&[Weekday::Sun], "01:00", "05:00", "Europe/Berlin");
        assert_eq!(
            autumn.occurrence_on(Date::constant(2026, 10, 25)),
            Some(Occurrence {
                opens: at("2026-10-24T23:00:00Z"),
                closes: at("2026-10-25T04:00:00Z")
            })
        );
    }

    #[test]
    fn a_boundary_in_the_skipped_hour_is_the_moment_the_clocks_jump() {
        // Berlin 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z; 02:30 never happens.
        let opening = weekly(&[Weekday::Sun], "02:30", "06:00", "Europe/Berlin");
        let o = opening.occurrence_on(Date::constant(2026, 3, 29)).unwrap();
        assert_eq!(o.opens, at("2026-03-29T01:00:00Z"));
        assert_eq!(o.closes, at("2026-03-29T04:00:00Z"));
        assert!(opening.covering(at("2026-03-29T00:59:59Z")).is_none());
        assert!(opening.covering(at("2026-03-29T01:00:00Z")).is_some());

        let closing = weekly(&[Weekday::Sun], "00:00", "02:30", "Europe/Berlin");
        let o = closing.occurrence_on(Date::constant(2026, 3, 29)).unwrap();
        assert_eq!(o.opens, at("2026-03-28T23:00:00Z"));
        assert_eq!(o.closes, at("2026-03-29T01:00:00Z"));
        assert!(closing.covering(at("2026-03-29T00:59:59Z")).is_some());
        assert!(closing.covering(at("2026-03-29T01:00:00Z")).is_none());

        // Entirely inside the skipped hour: the window does not happen that day.
        let skipped = weekly(&[Weekday::Sun], "02:10", "02:50", "Europe/Berlin");
        assert_eq!(skipped.occurrence_on(Date::constant(2026, 3, 29)), None);
        // ...and happens as usual a week later.
        assert!(skipped.occurrence_on(Date::constant(2026, 4, 5)).is_some());
    }

    #[test]
    fn a_boundary_in_the_repeated_hour_is_its_first_occurrence() {
        // Berlin 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z; 02:00-03:00 happens twice
        // (00:00Z-01:00Z in summer time, 01:00Z-02:00Z in winter time).
        let opening = weekly(&[Weekday::Sun], "02:30", "06:00", "Europe/Berlin");
        let o = opening.occurrence_on(Date::constant(2026, 10, 25)).unwrap();
        assert_eq!(o.opens, at("2026-10-25T00:30:00Z"));
        assert_eq!(o.closes, at("2026-10-25T05:00:00Z"));
        // The second 02:00-02:30 (01:00Z-01:30Z) is inside: the window opened at the first 02:30.
        assert!(opening.covering(at("2026-10-25T01:10:00Z")).is_some());

        let closing = weekly(&[Weekday::Sun], "00:00", "02:30", "Europe/Berlin");
        let o = closing.occurrence_on(Date::constant(2026, 10, 25)).unwrap();
        assert_eq!(o.closes, at("2026-10-25T00:30:00Z"));
        // The clock shows 02:10 again at 01:10Z: the window closed at the first 02:30 and does
        // not open again.
        assert!(closing.covering(at("2026-10-25T00:29:59Z")).is_some());
        assert!(closing.covering(at("2026-10-25T01:10:00Z")).is_none());

        // Entirely inside the repeated hour: its first occurrence only.
        let repeated = weekly(&[Weekday::Sun], "02:10", "02:50", "Europe/Berlin");
        let o = repeated
            .occurrence_on(Date::constant(2026, 10, 25))
            .unwrap();
        assert_eq!(
            (o.opens, o.closes),
            (at("2026-10-25T00:10:00Z"), at("2026-10-25T00:50:00Z"))
        );
        assert!(repeated.covering(at("2026-10-25T01:20:00Z")).is_none());
    }

    #[test]
    fn new_york_changes_on_other_days() {
        // 2026-03-08 02:00 EST becomes 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT becomes 01:00 EST.
        let w = weekly(&[Weekday::Sun], "02:15", "24:00", "America/New_York");
        let spring = w.occurrence_on(Date::constant(2026, 3, 8)).unwrap();
        assert_eq!(spring.opens, at("2026-03-08T07:00:00Z"));
        assert_eq!(spring.closes, at("2026-03-09T04:00:00Z"));
        let fall = weekly(&[Weekday::Sun], "01:30", "24:00", "America/New_York");
        let o = fall.occurrence_on(Date::constant(2026, 11, 1)).unwrap();
        assert_eq!(o.opens, at("2026-11-01T05:30:00Z"));
        assert_eq!(o.closes, at("2026-11-02T05:00:00Z"));
    }

    #[test]
    fn end_of_day_closes_at_the_next_midnight() {
        let w = weekly(&[Weekday::Fri], "18:00", "24:00", "UTC");
        assert!(w.covering(at("2026-01-16T23:59:59Z")).is_some());
        assert!(w.covering(at("2026-01-17T00:00:00Z")).is_none());
    }

    #[test]
    fn unusable_windows_are_refused_with_the_reason() {
        let bad = |days: &[Weekday], start: &str, end: &str, zone: &str| {
            Weekly::parse(&window(days, start, end, zone))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad(WEEKDAYS, "08:00", "20:00", "Europe/Berlinn").contains("unknown time zone"));
        assert!(bad(WEEKDAYS, "08:00", "20:00", "Mars/Olympus").contains("unknown time zone"));
        assert!(bad(WEEKDAYS, "20:00", "08:00", "UTC").contains("must be after start"));
        assert!(bad(WEEKDAYS, "08:00", "08:00", "UTC").contains("must be after start"));
        assert!(bad(WEEKDAYS, "8:00", "20:00", "UTC").contains("not a local time"));
        assert!(bad(WEEKDAYS, "24:00", "24:00", "UTC").contains("not a local time"));
        assert!(bad(WEEKDAYS, "08:60", "20:00", "UTC").contains("not a local time"));
        assert!(bad(&[], "08:00", "20:00", "UTC").contains("at least one day"));
        assert!(bad(WEEKDAYS, "00:00", "24:00", "UTC").is_empty());
        assert_eq!(
            problems(&[
                window(WEEKDAYS, "08:00", "20:00", "UTC"),
                window(WEEKDAYS, "08:00", "20:00", "Nowhere/Land")
            ]),
            vec![
                "exceptions.weekly[1]: unknown time zone \"Nowhere/Land\" (use an IANA name such as Europe/Berlin or UTC)"
                    .to_string()
            ]
        );
    }
}
