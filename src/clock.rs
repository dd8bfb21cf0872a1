//! The time a message says it was made, for its Date header and its DKIM signature's `t=`.

use std::time::{Duration, SystemTime};

/// `SOURCE_DATE_EPOCH` pins the Date header (reproducible output in tests); otherwise now.
pub fn message_date() -> SystemTime {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or_else(SystemTime::now, |secs| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
        })
}
