//! Cron schedules: the standard five fields (minute, hour, day of month,
//! month, day of week) with `*`, `?`, lists, ranges, steps and month/day
//! names, and the `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`
//! macros — the syntax Kubernetes accepts (robfig/cron's standard parser).
//! Times are computed in a time zone (`spec.timeZone`, read from the
//! system's zoneinfo by jiff, so no time-zone database is compiled in).
//!
//! Day of month and day of week combine as in Vixie cron: when both are
//! restricted, a day matching either runs; when one is `*`, the other
//! decides.

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, ToSpan};

/// A schedule that cannot be parsed, naming the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {schedule:?}: {reason}")]
pub struct ScheduleError {
    /// The schedule as written.
    pub schedule: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_star: bool,
    dow_star: bool,
}

/// How far ahead [`Schedule::next_after`] looks (a `30 2 31 2 *` schedule
/// never fires).
const MAX_YEARS_AHEAD: i64 = 5;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The first name's value (months start at 1, days at 0).
    names_from: u32,
}

fn value(s: &str, f: &Field) -> Option<u32> {
    if let Some(i) = f.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Some(f.names_from + u32::try_from(i).ok()?);
    }
    s.parse().ok()
}

/// Parses one field into a bit set; also says whether it was `*`/`?`.
fn parse_field(text: &str, f: &Field) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            star = step == 1 && text.split(',').count() == 1;
            (f.min, f.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, f).ok_or_else(|| format!("bad value {a:?}"))?;
            let b = value(b, f).ok_or_else(|| format!("bad value {b:?}"))?;
            (a, b)
        } else {
            let a = value(range, f).ok_or_else(|| format!("bad value {range:?}"))?;
            // `N/step` means N through the maximum.
            (a, if part.contains('/') { f.max } else { a })
        };
        if lo < f.min || hi > f.max || lo > hi {
            return Err(format!("{part:?} is outside {}-{}", f.min, f.max));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a schedule.
    pub fn parse(schedule: &str) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError {
            schedule: schedule.to_string(),
            reason,
        };
        let expanded = match schedule.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(err(format!("unknown descriptor {s}"))),
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!("expected 5 fields, found {}", fields.len())));
        }
        let f = |i: usize, field: Field| parse_field(fields[i], &field).map_err(&err);
        let (minutes, _) = f(
            0,
            Field {
                min: 0,
                max: 59,
                names: &[],
                names_from: 0,
            },
        )?;
        let (hours, _) = f(
            1,
            Field {
                min: 0,
                max: 23,
                names: &[],
                names_from: 0,
            },
        )?;
        let (dom, dom_star) = f(
            2,
            Field {
                min: 1,
                max: 31,
                names: &[],
                names_from: 0,
            },
        )?;
        let (months, _) = f(
            3,
            Field {
                min: 1,
                max: 12,
                names: &MONTHS,
                names_from: 1,
            },
        )?;
        let (mut dow, dow_star) = f(
            4,
            Field {
                min: 0,
                max: 7,
                names: &DAYS,
                names_from: 0,
            },
        )?;
        // 7 is Sunday too.
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & 0x7f;
        }
        Ok(Schedule {
            minutes,
            hours: u32::try_from(hours).unwrap_or(0),
            days_of_month: u32::try_from(dom).unwrap_or(0),
            months: u16::try_from(months).unwrap_or(0),
            days_of_week: u8::try_from(dow).unwrap_or(0),
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after_ms` (milliseconds
    /// since the epoch), in `tz`; `None` if there is none within five
    /// years. A time skipped by a daylight-saving jump runs at the first
    /// instant after the gap (jiff's "compatible" rule, as cron does).
    pub fn next_after(&self, after_ms: i64, tz: &TimeZone) -> Option<i64> {
        let after = Timestamp::from_millisecond(after_ms).ok()?;
        let start: DateTime = after.to_zoned(tz.clone()).datetime();
        let first_day = start.date();
        for day in 0..(366 * MAX_YEARS_AHEAD) {
            let d = first_day.checked_add(day.days()).ok()?;
            if !self.day_matches(d) {
                continue;
            }
            for h in (0..24i8).filter(|h| self.hours & (1 << h) != 0) {
                for m in (0..60i8).filter(|m| self.minutes & (1 << m) != 0) {
                    let dt = d.at(h, m, 0, 0);
                    if day == 0 && dt < start.date().at(start.hour(), start.minute(), 0, 0) {
                        continue;
                    }
                    let Ok(z) = tz.to_ambiguous_zoned(dt).compatible() else {
                        continue;
                    };
                    let ms = z.timestamp().as_millisecond();
                    if ms > after_ms {
                        return Some(ms);
                    }
                }
            }
        }
        None
    }
}

/// The time zone of `spec.timeZone` (an IANA name read from the system's
/// zoneinfo), or the controller's local zone when unset, as Kubernetes.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None | Some("") => Ok(TimeZone::try_system().unwrap_or(TimeZone::UTC)),
        Some("UTC") | Some("Etc/UTC") => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|e| format!("unknown time zone {n:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }
    fn show(ms: i64) -> String {
        Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    #[test]
    fn next_times_in_utc() {
        let cases = [
            ("* * * * *", "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z"),
            ("* * * * *", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"),
            (
                "*/15 * * * *",
                "2026-01-01T00:16:00Z",
                "2026-01-01T00:30:00Z",
            ),
            ("5 4 * * *", "2026-01-01T04:05:00Z", "2026-01-02T04:05:00Z"),
            (
                "0 9-17/4 * * mon-fri",
                "2026-01-02T14:00:00Z",
                "2026-01-02T17:00:00Z",
            ),
            // 2026-01-03 is a Saturday: to Monday 09:00.
            (
                "0 9-17/4 * * MON-FRI",
                "2026-01-02T18:00:00Z",
                "2026-01-05T09:00:00Z",
            ),
            ("@hourly", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"),
            ("@daily", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
            ("@weekly", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
            ("@monthly", "2026-01-15T00:00:00Z", "2026-02-01T00:00:00Z"),
            ("@yearly", "2026-01-15T00:00:00Z", "2027-01-01T00:00:00Z"),
            (
                "0 0 29 feb *",
                "2026-03-01T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            // Both day fields restricted: either matches (the 13th, or a Friday).
            ("0 0 13 * 5", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
            ("0 0 13 * 5", "2026-01-10T00:00:00Z", "2026-01-13T00:00:00Z"),
            // Sunday as 7.
            ("0 12 * * 7", "2026-01-01T00:00:00Z", "2026-01-04T12:00:00Z"),
            (
                "30 6 1,15 * ?",
                "2026-01-02T00:00:00Z",
                "2026-01-15T06:30:00Z",
            ),
        ];
        for (sched, after, want) in cases {
            let s = Schedule::parse(sched).unwrap();
            let got = s.next_after(ms(after), &TimeZone::UTC).map(show);
            assert_eq!(got.as_deref(), Some(want), "{sched} after {after}");
        }
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(ms("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        // 09:00 in Berlin in winter is 08:00 UTC, in summer 07:00 UTC.
        let s = Schedule::parse("0 9 * * *").unwrap();
        assert_eq!(
            show(s.next_after(ms("2026-01-10T00:00:00Z"), &berlin).unwrap()),
            "2026-01-10T08:00:00Z"
        );
        assert_eq!(
            show(s.next_after(ms("2026-07-10T00:00:00Z"), &berlin).unwrap()),
            "2026-07-10T07:00:00Z"
        );
        // 02:30 does not exist on 2026-03-29 in Berlin: runs at 03:30 CEST.
        let s = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            show(s.next_after(ms("2026-03-28T12:00:00Z"), &berlin).unwrap()),
            "2026-03-29T01:30:00Z"
        );
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn bad_schedules_are_rejected() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "@fortnightly",
            "a b c d e",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
