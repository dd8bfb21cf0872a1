//! Durations written as people write them: `30s`, `5m`, `1h`, `7d`, `250ms`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error};

use super::Invalid;

pub fn parse(s: &str) -> Result<Duration, Invalid> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Invalid(format!("`{s}` is not a duration: write e.g. 30s, 5m, 1h, 7d or 250ms")))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => {
            return Err(Invalid(format!(
                "`{s}` is not a duration: write e.g. 30s, 5m, 1h, 7d or 250ms"
            )));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

pub fn format(d: &Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms >= 86_400_000 && ms.is_multiple_of(86_400_000) {
        format!("{}d", ms / 86_400_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(d))
}

/// A string as written (`30s`), or a bare number of seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = string_or_number(d)?;
    parse(&raw).map_err(D::Error::custom)
}

/// A string, or a number YAML read as one (`rate: 10`, `timeout: 30`), as its text.
pub(super) fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Int(i64),
        Float(f64),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Text(s) => s,
        Raw::Int(n) => n.to_string(),
        Raw::Float(n) => n.to_string(),
    })
}
