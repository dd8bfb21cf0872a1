//! `retention`: how long per-reader records are kept. Off by default: nothing is removed
//! until the operator says how long is needed.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

use super::Invalid;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Per-reader delivery records (and bounce records) of issues that completed longer ago
    /// than this are reduced to the counts: `24 months`, `2 years`, `400 days`. Null:
    /// kept forever. At least 90 days: the warm-up and the soft-bounce rule read them.
    pub deliveries: Option<Age>,
    /// Sign-ups never confirmed are deleted this long after they were posted: `30 days`.
    pub unconfirmed_signups: Option<Age>,
}

/// An age in calendar months and days, as people write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age {
    pub months: u32,
    pub days: u32,
}

impl Age {
    /// The moment this long before `now`.
    pub fn before(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        now.checked_sub_months(chrono::Months::new(self.months))
            .and_then(|t| t.checked_sub_days(chrono::Days::new(u64::from(self.days))))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
    }

    /// Roughly, in days (a month as 30): for limits.
    pub fn approximate_days(&self) -> u64 {
        u64::from(self.months) * 30 + u64::from(self.days)
    }
}

impl std::str::FromStr for Age {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Age, Invalid> {
        let wrong = || Invalid(format!("`{s}` is not an age: write e.g. 30 days, 24 months or 2 years"));
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: u32 = number.parse().map_err(|_| wrong())?;
        match unit.trim().to_ascii_lowercase().as_str() {
            "d" | "day" | "days" => Ok(Age { months: 0, days: n }),
            "month" | "months" => Ok(Age { months: n, days: 0 }),
            "y" | "year" | "years" => Ok(Age {
                months: n.checked_mul(12).ok_or_else(wrong)?,
                days: 0,
            }),
            _ => Err(wrong()),
        }
    }
}

impl std::fmt::Display for Age {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.months, self.days) {
            (0, d) => write!(f, "{d} days"),
            (m, 0) => write!(f, "{m} months"),
            (m, d) => write!(f, "{m} months {d} days"),
        }
    }
}

impl Serialize for Age {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Age, D::Error> {
        let raw = super::duration::string_or_number(d)?;
        raw.parse().map_err(D::Error::custom)
    }
}

impl Retention {
    /// What cannot work: the key and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(age) = self.deliveries
            && age.approximate_days() < 90
        {
            return Err((
                "retention.deliveries".into(),
                format!(
                    "{age} is too short: at least 90 days (the warm-up and the soft-bounce rule read the last months' deliveries)"
                ),
            ));
        }
        if let Some(age) = self.unconfirmed_signups
            && age.approximate_days() < 2
        {
            return Err((
                "retention.unconfirmed_signups".into(),
                format!(
                    "{age} is too short: at least 2 days, or a confirmation link would die before the reader opens it"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_as_people_write_them() {
        assert_eq!("24 months".parse(), Ok(Age { months: 24, days: 0 }));
        assert_eq!("2 years".parse(), Ok(Age { months: 24, days: 0 }));
        assert_eq!("30 days".parse(), Ok(Age { months: 0, days: 30 }));
        assert_eq!("30d".parse(), Ok(Age { months: 0, days: 30 }));
        assert!("soon".parse::<Age>().is_err());
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-31T12:00:00Z")
            .unwrap()
            .to_utc();
        let month: Age = "1 month".parse().unwrap();
        assert_eq!(month.before(now).to_rfc3339(), "2026-02-28T12:00:00+00:00");
    }
}
