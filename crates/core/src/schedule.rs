//! Weekly time windows (R-POL-1, R-POL-3), evaluated in the requester's time zone.
//!
//! A set of windows is empty ("no time restrictions": always permitted) or a list of
//! `[start, end)` minute ranges on chosen weekdays, in local wall-clock time. Evaluation
//! converts the instant to the zone's civil time (DST-correct, via jiff's bundled tzdb).

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::ValidationError;

/// Days of the week as a bit set, Monday = bit 0 … Sunday = bit 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weekdays(u8);

pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Weekdays {
    pub const ALL: Weekdays = Weekdays(0x7f);

    pub fn from_bits(bits: u8) -> Option<Weekdays> {
        (bits != 0 && bits & 0x80 == 0).then_some(Weekdays(bits))
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    /// `index` 0 = Monday.
    pub fn contains(self, index: u8) -> bool {
        self.0 & (1 << index) != 0
    }

    /// Parses `["mon", "tue", …]`; also accepts ranges like `mon-fri`.
    pub fn parse(field: &str, names: &[String]) -> Result<Weekdays, ValidationError> {
        let mut bits = 0u8;
        for (i, name) in names.iter().enumerate() {
            let day = |n: &str| {
                DAY_NAMES.iter().position(|d| *d == n.to_ascii_lowercase()).ok_or_else(|| {
                    ValidationError::new(
                        format!("{field}[{i}]"),
                        format!("'{n}' is not a day (mon, tue, wed, thu, fri, sat, sun)"),
                    )
                })
            };
            match name.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day(a)?, day(b)?);
                    if a > b {
                        return Err(ValidationError::new(
                            format!("{field}[{i}]"),
                            "a day range must run forward, e.g. mon-fri",
                        ));
                    }
                    (a..=b).for_each(|d| bits |= 1 << d);
                }
                None => bits |= 1 << day(name)?,
            }
        }
        Weekdays::from_bits(bits).ok_or_else(|| ValidationError::new(field, "name at least one day"))
    }

    pub fn names(self) -> Vec<&'static str> {
        (0..7).filter(|d| self.contains(*d)).map(|d| DAY_NAMES[d as usize]).collect()
    }
}

/// One weekly window: on `days`, from `start_minute` (inclusive) to `end_minute` (exclusive),
/// minutes after local midnight; `end_minute` may be 1440 (midnight at the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub days: Weekdays,
    pub start_minute: u16,
    pub end_minute: u16,
}

impl Window {
    pub fn new(days: Weekdays, start_minute: u16, end_minute: u16) -> Result<Window, ValidationError> {
        if end_minute > 1440 || start_minute >= end_minute {
            return Err(ValidationError::new(
                "end",
                "a window must end after it starts, on the same day (24:00 at the latest)",
            ));
        }
        Ok(Window { days, start_minute, end_minute })
    }

    fn contains(&self, weekday: u8, minute: u16) -> bool {
        self.days.contains(weekday) && self.start_minute <= minute && minute < self.end_minute
    }
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes after midnight.
pub fn parse_hhmm(field: &str, text: &str) -> Result<u16, ValidationError> {
    let bad = || ValidationError::new(field, format!("'{text}' is not a time of day HH:MM (00:00 to 24:00)"));
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

pub fn format_hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The time restrictions of an entitlement or policy. No windows means no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeRestrictions {
    pub windows: Vec<Window>,
}

impl TimeRestrictions {
    pub fn always() -> Self {
        TimeRestrictions { windows: Vec::new() }
    }

    pub fn is_unrestricted(&self) -> bool {
        self.windows.is_empty()
    }

    /// The compact text form the store keeps: `DAYBITS:START-END` joined by `;`.
    pub fn encode(&self) -> String {
        self.windows
            .iter()
            .map(|w| format!("{}:{}-{}", w.days.bits(), w.start_minute, w.end_minute))
            .collect::<Vec<_>>()
            .join(";")
    }

    pub fn decode(text: &str) -> Option<TimeRestrictions> {
        let windows = text
            .split(';')
            .filter(|s| !s.is_empty())
            .map(|item| {
                let (bits, range) = item.split_once(':')?;
                let (a, b) = range.split_once('-')?;
                Window::new(Weekdays::from_bits(bits.parse().ok()?)?, a.parse().ok()?, b.parse().ok()?).ok()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(TimeRestrictions { windows })
    }

    /// Whether `slot` (weekday 0 = Monday, minute of the day) is permitted.
    pub fn permits_slot(&self, slot: LocalSlot) -> bool {
        self.windows.is_empty() || self.windows.iter().any(|w| w.contains(slot.weekday, slot.minute))
    }
}

/// Where an instant falls in a zone's week: weekday (0 = Monday) and minute of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSlot {
    pub weekday: u8,
    pub minute: u16,
}

pub fn local_slot(at: Timestamp, tz: &TimeZone) -> LocalSlot {
    let dt = at.to_zoned(tz.clone()).datetime();
    LocalSlot {
        weekday: dt.weekday().to_monday_zero_offset() as u8,
        minute: dt.hour() as u16 * 60 + dt.minute() as u16,
    }
}

/// The first instant at or after `from` (and before `until`) at which `permits` stops holding,
/// checking each minute boundary; `until` if it holds throughout. Used to clip an access
/// period to the allowed span that contains its start.
pub fn allowed_until(
    from: Timestamp,
    until: Timestamp,
    tz: &TimeZone,
    permits: impl Fn(LocalSlot) -> bool,
) -> Timestamp {
    let minute = jiff::SignedDuration::from_secs(60);
    // Align to the next whole minute after `from`; the slot of `from` itself was checked.
    let secs = from.as_second();
    let mut t = Timestamp::from_second(secs - secs.rem_euclid(60)).expect("in range") + minute;
    while t < until {
        if !permits(local_slot(t, tz)) {
            return t;
        }
        t += minute;
    }
    until
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parse_days_and_times() {
        let d = Weekdays::parse("days", &["mon-fri".into()]).unwrap();
        assert_eq!(d.names(), ["mon", "tue", "wed", "thu", "fri"]);
        assert_eq!(Weekdays::parse("days", &["sun".into(), "sat".into()]).unwrap().names(), ["sat", "sun"]);
        assert!(Weekdays::parse("days", &["fri-mon".into()]).is_err());
        assert!(Weekdays::parse("days", &["funday".into()]).is_err());
        assert!(Weekdays::parse("days", &[]).is_err());
        assert_eq!(parse_hhmm("t", "08:30").unwrap(), 510);
        assert_eq!(parse_hhmm("t", "24:00").unwrap(), 1440);
        for bad in ["8:30", "24:01", "12:60", "ab:cd", "1200"] {
            assert!(parse_hhmm("t", bad).is_err(), "{bad}");
        }
        assert!(Window::new(Weekdays::ALL, 600, 600).is_err());
        assert!(Window::new(Weekdays::ALL, 600, 1441).is_err());
    }

    #[test]
    fn windows_are_evaluated_in_the_users_zone_across_dst() {
        let weekdays_9_to_17 = TimeRestrictions {
            windows: vec![Window::new(Weekdays::parse("d", &["mon-fri".into()]).unwrap(), 540, 1020).unwrap()],
        };
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        // Monday 2026-03-23 08:30 UTC = 09:30 in Berlin (CET, +1) = 17:30 in Tokyo.
        let t = ts("2026-03-23T08:30:00Z");
        assert!(weekdays_9_to_17.permits_slot(local_slot(t, &berlin)));
        assert!(!weekdays_9_to_17.permits_slot(local_slot(t, &tokyo)));
        // A week later Berlin is on summer time (+2): 08:30 UTC = 10:30 local, still inside;
        // 07:30 UTC = 09:30 local, inside only because of DST.
        assert!(weekdays_9_to_17.permits_slot(local_slot(ts("2026-03-30T07:30:00Z"), &berlin)));
        assert!(!weekdays_9_to_17.permits_slot(local_slot(ts("2026-03-23T07:30:00Z"), &berlin)));
        assert!(TimeRestrictions::always().permits_slot(local_slot(t, &tokyo)));
    }

    #[test]
    fn encoding_round_trips() {
        let r = TimeRestrictions {
            windows: vec![
                Window::new(Weekdays::ALL, 60, 1440).unwrap(),
                Window::new(Weekdays::from_bits(1).unwrap(), 0, 30).unwrap(),
            ],
        };
        assert_eq!(TimeRestrictions::decode(&r.encode()), Some(r));
        assert_eq!(TimeRestrictions::decode(""), Some(TimeRestrictions::always()));
        assert_eq!(TimeRestrictions::decode("0:1-2"), None);
    }

    #[test]
    fn allowed_until_clips_to_the_window_end() {
        let r = TimeRestrictions { windows: vec![Window::new(Weekdays::ALL, 540, 1020).unwrap()] };
        let utc = TimeZone::UTC;
        let end = allowed_until(ts("2026-01-05T16:00:00Z"), ts("2026-01-05T20:00:00Z"), &utc, |s| r.permits_slot(s));
        assert_eq!(end, ts("2026-01-05T17:00:00Z"));
        let end = allowed_until(ts("2026-01-05T16:00:00Z"), ts("2026-01-05T16:30:00Z"), &utc, |s| r.permits_slot(s));
        assert_eq!(end, ts("2026-01-05T16:30:00Z"));
    }
}
