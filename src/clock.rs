//! The time a message says it was made, for its Date header and its DKIM signature's `t=`.

use std::time::{Duration, SystemTime};

/// `SOURCE_DATE_EPOCH` pins the Date header (reproducible output in tests); otherwise now.
/// The variable is read once per process: a send asks per message whether the minute turned.
pub fn message_date() -> SystemTime {
    static PINNED: std::sync::OnceLock<Option<SystemTime>> = std::sync::OnceLock::new();
    PINNED
        .get_or_init(|| {
            std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        })
        .unwrap_or_else(SystemTime::now)
}
