//! What a report says of one recipient, as every reader of reports (DSN, ARF, SES's JSON)
//! gives it.

use super::classify::Reason;

/// What one recipient's part of a report says.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Lower case; `None` when the report names no one (a complaint about "undisclosed
    /// recipients").
    pub recipient: Option<String>,
    /// The address before any rewriting (DSN Original-Recipient), when it differs.
    pub original_recipient: Option<String>,
    pub reason: Reason,
    /// The enhanced status code, as the report gives it.
    pub status: Option<String>,
    /// The server's words, on one line.
    pub diagnostic: String,
}

/// Diagnostics fold over lines; the ledger and `status` show them on one.
pub fn one_line(s: &str) -> String {
    let mut out = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 500 {
        let mut cut = 500;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}
