//! Cron schedules as upstream's CronJob controller reads them
//! (`robfig/cron/v3` `ParseStandard`): five fields (minute, hour, day of
//! month, month, day of week), `*`, `?`, ranges, steps, lists, month and
//! weekday names, the `@yearly`...`@hourly` descriptors, `@every <dur>` and
//! a leading `TZ=`/`CRON_TZ=`. Next times are computed in a time zone from
//! the system tz database.

use jiff::civil::{date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("expected exactly 5 fields, found {0}: {1}")]
    FieldCount(usize, String),
    #[error("failed to parse int from {0}")]
    Int(String),
    #[error("beginning of range ({0}) below minimum ({1}): {2}")]
    BelowMin(u32, u32, String),
    #[error("end of range ({0}) above maximum ({1}): {2}")]
    AboveMax(u32, u32, String),
    #[error("beginning of range ({0}) beyond end of range ({1}): {2}")]
    Backwards(u32, u32, String),
    #[error("step of range should be a positive number: {0}")]
    Step(String),
    #[error("too many hyphens: {0}")]
    Hyphens(String),
    #[error("too many slashes: {0}")]
    Slashes(String),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("failed to parse duration {0}")]
    Duration(String),
    #[error("provided bad location {0}")]
    Location(String),
    #[error("empty spec string")]
    Empty,
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    kind: Kind,
    /// A time zone named in the spec itself (`TZ=...`), overriding the
    /// CronJob's.
    pub zone: Option<TimeZone>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
    },
    Every(i64),
}

const STAR: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Schedule {
    pub fn parse(spec: &str) -> Result<Schedule, ParseError> {
        let mut spec = spec.trim();
        if spec.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut zone = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let (tz, rest) = spec.split_once(' ').unwrap_or((spec, ""));
            let name = tz.split_once('=').map(|(_, n)| n).unwrap_or("");
            zone = Some(TimeZone::get(name).map_err(|_| ParseError::Location(name.into()))?);
            spec = rest.trim();
        }
        if let Some(d) = spec.strip_prefix('@') {
            let fields = match d {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    if let Some(dur) = d.strip_prefix("every ") {
                        let secs = parse_go_duration(dur.trim())
                            .ok_or_else(|| ParseError::Duration(dur.into()))?;
                        return Ok(Schedule {
                            kind: Kind::Every(secs.max(1)),
                            zone,
                        });
                    }
                    return Err(ParseError::Descriptor(spec.into()));
                }
            };
            let mut s = Schedule::parse(fields)?;
            s.zone = zone;
            return Ok(s);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ParseError::FieldCount(fields.len(), spec.into()));
        }
        Ok(Schedule {
            kind: Kind::Fields {
                minute: field(fields[0], &MINUTES)?,
                hour: field(fields[1], &HOURS)?,
                dom: field(fields[2], &DOM)?,
                month: field(fields[3], &MONTHS)?,
                dow: field(fields[4], &DOW)?,
            },
            zone,
        })
    }

    /// The first activation strictly after `t`, in `tz` (or the spec's own
    /// zone); `None` when nothing matches within five years (`30 0 30 2 *`).
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let tz = self.zone.as_ref().unwrap_or(tz);
        let (minute, hour, dom, month, dow) = match self.kind {
            Kind::Every(secs) => {
                // robfig's ConstantDelaySchedule: whole seconds after t.
                let base = t.as_second();
                return Timestamp::from_second(base + secs).ok();
            }
            Kind::Fields {
                minute,
                hour,
                dom,
                month,
                dow,
            } => (minute, hour, dom, month, dow),
        };
        let local = t.to_zoned(tz.clone()).datetime();
        // The next whole minute.
        let mut dt = local.checked_add(jiff::Span::new().minutes(1)).ok()?;
        dt = dt.with().second(0).subsec_nanosecond(0).build().ok()?;
        let limit = dt.year() + 5;
        let day_ok = |d: &DateTime| {
            let dom_hit = bit(dom, d.day() as u32);
            let dow_hit = bit(dow, d.weekday().to_sunday_zero_offset() as u32);
            if dom & STAR != 0 || dow & STAR != 0 {
                dom_hit && dow_hit
            } else {
                dom_hit || dow_hit
            }
        };
        loop {
            if dt.year() > limit {
                return None;
            }
            if !bit(month, dt.month() as u32) {
                let (y, m) = if dt.month() == 12 {
                    (dt.year() + 1, 1)
                } else {
                    (dt.year(), dt.month() + 1)
                };
                dt = date(y, m, 1).at(0, 0, 0, 0);
                continue;
            }
            if !day_ok(&dt) {
                dt = dt.date().tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if !bit(hour, dt.hour() as u32) {
                dt = dt
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(jiff::Span::new().hours(1))
                    .ok()?;
                continue;
            }
            if !bit(minute, dt.minute() as u32) {
                dt = dt.checked_add(jiff::Span::new().minutes(1)).ok()?;
                continue;
            }
            // A civil time in a DST gap moves forward; one in a fold takes
            // its first instant. Skip results not after `t` (a fold's
            // repeated hour).
            let at = tz.to_ambiguous_zoned(dt).compatible().ok()?.timestamp();
            if at > t {
                return Some(at);
            }
            dt = dt.checked_add(jiff::Span::new().minutes(1)).ok()?;
        }
    }
}

fn bit(set: u64, i: u32) -> bool {
    set & (1u64 << i) != 0
}

fn field(f: &str, b: &Bounds) -> Result<u64, ParseError> {
    let mut bits = 0u64;
    for expr in f.split(',') {
        bits |= range(expr, b)?;
    }
    Ok(bits)
}

fn value(s: &str, b: &Bounds, expr: &str) -> Result<u32, ParseError> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + b.min);
    }
    s.parse::<u32>().map_err(|_| ParseError::Int(expr.into()))
}

fn range(expr: &str, b: &Bounds) -> Result<u64, ParseError> {
    let parts: Vec<&str> = expr.split('/').collect();
    if parts.len() > 2 {
        return Err(ParseError::Slashes(expr.into()));
    }
    let bounds: Vec<&str> = parts[0].split('-').collect();
    if bounds.len() > 2 {
        return Err(ParseError::Hyphens(expr.into()));
    }
    let mut extra = 0u64;
    let (start, mut end);
    if bounds[0] == "*" || bounds[0] == "?" {
        start = b.min;
        end = b.max;
        extra = STAR;
    } else {
        start = value(bounds[0], b, expr)?;
        end = match bounds.get(1) {
            Some(e) => value(e, b, expr)?,
            None => start,
        };
    }
    let mut step = 1;
    if let Some(s) = parts.get(1) {
        step = s.parse::<u32>().map_err(|_| ParseError::Int(expr.into()))?;
        if step == 0 {
            return Err(ParseError::Step(expr.into()));
        }
        // "N/step" means "N-max/step".
        if bounds.len() == 1 && extra == 0 {
            end = b.max;
        }
        if step > 1 {
            extra = 0;
        }
    }
    if start < b.min {
        return Err(ParseError::BelowMin(start, b.min, expr.into()));
    }
    if end > b.max {
        return Err(ParseError::AboveMax(end, b.max, expr.into()));
    }
    if start > end {
        return Err(ParseError::Backwards(start, end, expr.into()));
    }
    let mut bits = 0u64;
    let mut i = start;
    while i <= end {
        bits |= 1u64 << i;
        i += step;
    }
    Ok(bits | extra)
}

/// Go's `time.ParseDuration` for the units a schedule may use, in whole
/// seconds (rounded down, as robfig does).
fn parse_go_duration(s: &str) -> Option<i64> {
    let mut total_ms: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..u_end];
        rest = &rest[u_end..];
        let ms = match unit {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            _ => return None,
        };
        total_ms += n * ms;
    }
    Some((total_ms / 1000.0).floor() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(spec: &str, from: &str, tz: &str) -> String {
        let tz = TimeZone::get(tz).expect("tz");
        Schedule::parse(spec)
            .expect("parse")
            .next_after(ts(from), &tz)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn basic_fields_and_steps() {
        assert_eq!(
            next("*/15 * * * *", "2025-03-01T10:07:30Z", "UTC"),
            "2025-03-01T10:15:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2025-03-01T10:15:00Z", "UTC"),
            "2025-03-01T10:30:00Z"
        );
        assert_eq!(
            next("5 4 * * *", "2025-03-01T10:00:00Z", "UTC"),
            "2025-03-02T04:05:00Z"
        );
        assert_eq!(
            next("0 22 * * 1-5", "2025-03-01T10:00:00Z", "UTC"),
            "2025-03-03T22:00:00Z"
        );
        assert_eq!(
            next("0 0 1 jan,JUL *", "2025-03-01T10:00:00Z", "UTC"),
            "2025-07-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * sun", "2025-03-01T10:00:00Z", "UTC"),
            "2025-03-02T00:00:00Z"
        );
        assert_eq!(
            next("10/20 * * * *", "2025-03-01T10:31:00Z", "UTC"),
            "2025-03-01T10:50:00Z"
        );
        assert_eq!(
            next("@hourly", "2025-03-01T10:31:00Z", "UTC"),
            "2025-03-01T11:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2025-03-01T10:31:00Z", "UTC"),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@every 90s", "2025-03-01T10:31:00Z", "UTC"),
            "2025-03-01T10:32:30Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: either matches (1st of the month, or a Friday).
        assert_eq!(
            next("0 0 1 * 5", "2025-03-01T10:00:00Z", "UTC"),
            "2025-03-07T00:00:00Z"
        );
        // One is '*': both must match (only Fridays).
        assert_eq!(
            next("0 0 * * 5", "2025-03-01T10:00:00Z", "UTC"),
            "2025-03-07T00:00:00Z"
        );
        // '*/2' is not a star: either matches.
        assert_eq!(
            next("0 0 */2 * 1", "2025-03-01T10:00:00Z", "UTC"),
            "2025-03-03T00:00:00Z"
        );
        // Never: 30 February.
        assert_eq!(next("0 0 30 2 *", "2025-03-01T10:00:00Z", "UTC"), "");
    }

    #[test]
    fn time_zones_and_dst() {
        // 09:00 in New York is 14:00 UTC in winter, 13:00 in summer.
        assert_eq!(
            next("0 9 * * *", "2025-03-01T15:00:00Z", "America/New_York"),
            "2025-03-02T14:00:00Z"
        );
        assert_eq!(
            next("0 9 * * *", "2025-07-01T15:00:00Z", "America/New_York"),
            "2025-07-02T13:00:00Z"
        );
        // 02:30 does not exist on 2025-03-09 in New York: it moves to 03:30 EDT.
        assert_eq!(
            next("30 2 * * *", "2025-03-09T05:00:00Z", "America/New_York"),
            "2025-03-09T07:30:00Z"
        );
        // 01:30 happens twice on 2025-11-02: only the first runs.
        assert_eq!(
            next("30 1 * * *", "2025-11-02T04:00:00Z", "America/New_York"),
            "2025-11-02T05:30:00Z"
        );
        assert_eq!(
            next("30 1 * * *", "2025-11-02T05:30:00Z", "America/New_York"),
            "2025-11-03T06:30:00Z"
        );
        // TZ= in the spec overrides.
        assert_eq!(
            next("TZ=Asia/Tokyo 0 9 * * *", "2025-03-01T00:00:00Z", "UTC"),
            "2025-03-02T00:00:00Z"
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            Schedule::parse("* * * *"),
            Err(ParseError::FieldCount(4, _))
        ));
        assert!(matches!(
            Schedule::parse("60 * * * *"),
            Err(ParseError::AboveMax(60, 59, _))
        ));
        assert!(matches!(
            Schedule::parse("* * 0 * *"),
            Err(ParseError::BelowMin(0, 1, _))
        ));
        assert!(matches!(
            Schedule::parse("5-1 * * * *"),
            Err(ParseError::Backwards(5, 1, _))
        ));
        assert!(matches!(
            Schedule::parse("*/0 * * * *"),
            Err(ParseError::Step(_))
        ));
        assert!(matches!(
            Schedule::parse("* * * * 7"),
            Err(ParseError::AboveMax(7, 6, _))
        ));
        assert!(matches!(
            Schedule::parse("@fortnightly"),
            Err(ParseError::Descriptor(_))
        ));
        assert!(matches!(
            Schedule::parse("TZ=Mars/Base * * * * *"),
            Err(ParseError::Location(_))
        ));
        assert_eq!(Schedule::parse(""), Err(ParseError::Empty));
    }
}
