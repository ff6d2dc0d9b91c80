//! Task schedules as Snowflake writes them: `'USING CRON 0 2 * * * UTC'` (a five-field cron
//! expression and an IANA time zone) or `'5 MINUTES'` (an interval counted from when the task
//! was resumed). Cron expressions are parsed and stepped by `croner`, time zones (with their
//! daylight-saving shifts) by `chrono-tz`, which DataFusion already builds.
//!
//! The scheduler asks one question: which is the latest slot at or before now that comes after
//! the last one handled. Asking for the latest slot only is the catch-up policy: after downtime
//! a task runs once for the most recent slot it missed, not once per missed slot.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::config::parse_duration;
use crate::error::{Error, Result};

/// When a task runs.
#[derive(Debug, Clone)]
pub(crate) enum Schedule {
    /// Every interval, counted from when the task was resumed.
    Every(Duration),
    /// At the times a cron expression names, in a time zone.
    Cron {
        /// The expression.
        cron: Box<Cron>,
        /// The zone its times are in.
        zone: Tz,
    },
}

/// The longest interval of a schedule (about 100 years): slots stay within chrono's dates.
const MAX_INTERVAL_DAYS: i64 = 36_500;
/// How far back the latest cron slot is looked for, widening window by window, so that a
/// minute-by-minute expression and a yearly one both take few steps.
const CRON_WINDOWS_DAYS: [i64; 4] = [1, 31, 400, 3_000];
/// Steps of one cron expression at most per search window.
const MAX_CRON_STEPS: usize = 50_000;

impl Schedule {
    /// Parses `USING CRON <5 fields> <zone>` or `<n> <unit>`.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        let upper = trimmed.to_ascii_uppercase();
        if let Some(rest) = upper.strip_prefix("USING CRON") {
            let rest = &trimmed[trimmed.len() - rest.len()..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let [minute, hour, day, month, weekday, zone] = fields.as_slice() else {
                return Err(Error::Plan(format!(
                    "SCHEDULE = '{text}': expected USING CRON <minute> <hour> <day of month> \
                     <month> <day of week> <time zone>, as in 'USING CRON 0 2 * * * UTC'"
                )));
            };
            let expression = [*minute, *hour, *day, *month, *weekday].join(" ");
            let cron = Cron::from_str(&expression).map_err(|e| {
                Error::Plan(format!(
                    "SCHEDULE = '{text}': '{expression}' is not cron: {e}"
                ))
            })?;
            let zone: Tz = zone.parse().map_err(|_| {
                Error::Plan(format!(
                    "SCHEDULE = '{text}': '{zone}' is not a time zone (UTC, Europe/Paris, ...)"
                ))
            })?;
            return Ok(Schedule::Cron {
                cron: Box::new(cron),
                zone,
            });
        }
        let every = parse_duration(trimmed).map_err(|_| {
            Error::Plan(format!(
                "SCHEDULE = '{text}': expected an interval such as '5 MINUTES' or 'USING CRON \
                 0 2 * * * UTC'"
            ))
        })?;
        let every = Duration::from_std(every)
            .ok()
            .filter(|d| *d >= Duration::seconds(1) && *d <= Duration::days(MAX_INTERVAL_DAYS))
            .ok_or_else(|| {
                Error::Plan(format!(
                    "SCHEDULE = '{text}': the interval must be between a second and \
                     {MAX_INTERVAL_DAYS} days"
                ))
            })?;
        Ok(Schedule::Every(every))
    }

    /// The latest slot in `(after, now]`, if any. `anchor` is when the task was resumed: an
    /// interval's slots are `anchor + k × interval`, and no slot before it counts.
    pub(crate) fn latest_slot(
        &self,
        anchor: DateTime<Utc>,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let after = after.max(anchor);
        if now <= after {
            return None;
        }
        let slot = match self {
            Schedule::Every(every) => {
                let elapsed = (now - anchor).num_milliseconds();
                let step = every.num_milliseconds().max(1);
                let k = elapsed / step;
                if k < 1 {
                    return None;
                }
                anchor.checked_add_signed(Duration::milliseconds(k.checked_mul(step)?))?
            }
            Schedule::Cron { cron, zone } => {
                let mut found = None;
                for days in CRON_WINDOWS_DAYS {
                    let start = now
                        .checked_sub_signed(Duration::days(days))
                        .map_or(after, |s| s.max(after));
                    found = latest_cron_slot(cron, *zone, start, now);
                    if found.is_some() || start == after {
                        break;
                    }
                }
                found?
            }
        };
        (slot > after).then_some(slot)
    }

    /// The first slot after `t` (for `SHOW TASKS`' next run).
    pub(crate) fn next_slot(
        &self,
        anchor: DateTime<Utc>,
        t: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(every) => {
                let step = every.num_milliseconds().max(1);
                let elapsed = (t.max(anchor) - anchor).num_milliseconds();
                let k = elapsed / step + 1;
                anchor.checked_add_signed(Duration::milliseconds(k.checked_mul(step)?))
            }
            Schedule::Cron { cron, zone } => cron
                .find_next_occurrence(&t.max(anchor).with_timezone(zone), false)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
        }
    }
}

/// The last occurrence of `cron` in `(start, now]`, stepping forward from `start`.
fn latest_cron_slot(
    cron: &Cron,
    zone: Tz,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut at = start.with_timezone(&zone);
    let mut latest = None;
    for _ in 0..MAX_CRON_STEPS {
        let Ok(next) = cron.find_next_occurrence(&at, false) else {
            break;
        };
        if next.with_timezone(&Utc) > now {
            break;
        }
        latest = Some(next.with_timezone(&Utc));
        at = next;
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn intervals_count_from_the_resume_and_catch_up_once() {
        let every = Schedule::parse("5 MINUTES").unwrap();
        let anchor = utc(2026, 1, 1, 10, 0);
        assert_eq!(
            every.latest_slot(anchor, anchor, utc(2026, 1, 1, 10, 4)),
            None
        );
        assert_eq!(
            every.latest_slot(anchor, anchor, utc(2026, 1, 1, 10, 5)),
            Some(utc(2026, 1, 1, 10, 5))
        );
        // Down from 10:06 to 11:02: one run, for the 11:00 slot.
        assert_eq!(
            every.latest_slot(anchor, utc(2026, 1, 1, 10, 5), utc(2026, 1, 1, 11, 2)),
            Some(utc(2026, 1, 1, 11, 0))
        );
        assert_eq!(
            every.latest_slot(anchor, utc(2026, 1, 1, 11, 0), utc(2026, 1, 1, 11, 2)),
            None
        );
        assert_eq!(
            every.next_slot(anchor, utc(2026, 1, 1, 11, 2)),
            Some(utc(2026, 1, 1, 11, 5))
        );
    }

    #[test]
    fn cron_slots_follow_their_time_zone() {
        let daily = Schedule::parse("USING CRON 0 2 * * * Europe/Paris").unwrap();
        let anchor = utc(2026, 1, 1, 0, 0);
        // 02:00 in Paris is 01:00 UTC in winter.
        assert_eq!(
            daily.latest_slot(anchor, anchor, utc(2026, 1, 3, 12, 0)),
            Some(utc(2026, 1, 3, 1, 0))
        );
        assert_eq!(
            daily.next_slot(anchor, utc(2026, 1, 3, 12, 0)),
            Some(utc(2026, 1, 4, 1, 0))
        );
        let yearly = Schedule::parse("using cron 0 0 1 1 * UTC").unwrap();
        assert_eq!(
            yearly.latest_slot(anchor, anchor, utc(2027, 6, 1, 0, 0)),
            Some(utc(2027, 1, 1, 0, 0))
        );
    }

    #[test]
    fn bad_schedules_say_what_is_expected() {
        for text in [
            "USING CRON 0 2 * * *",
            "USING CRON 0 99 * * * UTC",
            "USING CRON 0 2 * * * Mars/Olympus",
            "soon",
            "0 SECONDS",
            "100000000 DAYS",
        ] {
            let err = Schedule::parse(text).unwrap_err().to_string();
            assert!(err.contains("SCHEDULE"), "{text}: {err}");
        }
    }
}
