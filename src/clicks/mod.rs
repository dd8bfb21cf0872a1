//! Clicks counted per link and section without knowing who: every http(s) link of an issue's
//! HTML part points at `serve` through a short signed path that names the issue and the link's
//! number, the same for every reader ([`links`], [`path`]); `serve` redirects to the link as
//! stored at the first send and counts the request as a click or as a machine's, by reason
//! ([`machine`]), in memory ([`tally`]) until the counts are written.
//!
//! Nothing of a reader is in a link, and nothing of a request (its address, agent, time) is
//! kept beyond the burst window: what is stored is a number per issue, link, day and reason.

pub mod links;
pub mod machine;
pub mod path;
pub mod tally;

pub use links::{Link, LinkTable};
pub use machine::Reason;
pub use path::{Signer, Stamp};

use crate::config::Config;
use crate::unsubscribe::Secret;

/// What a send needs to point an issue's links at `serve`.
pub struct Clicks {
    issue: String,
    table: LinkTable,
    /// `https://openinfra.dev/newsletter/r`.
    base: String,
    signer: Signer,
    /// Add the 1x1 image (`analytics.opens`).
    opens: bool,
}

impl Clicks {
    /// `None` when `analytics.clicks` and `analytics.opens` are both off.
    pub fn new(config: &Config, issue: &str, table: LinkTable, secret: &Secret) -> Option<Clicks> {
        let a = &config.analytics;
        (a.clicks || a.opens).then(|| Clicks {
            issue: issue.to_owned(),
            table: if a.clicks { table } else { LinkTable::default() },
            base: config.click_url(),
            signer: Signer::new(secret),
            opens: a.opens,
        })
    }

    fn url(&self, n: u32, stamp: Stamp) -> String {
        format!("{}/{}", self.base, self.signer.path(&self.issue, n, stamp))
    }

    /// `html` with its counted links pointing at `serve` for messages made at `stamp`, and
    /// with `analytics.opens` the image (number 0) before the end of the body.
    pub fn rewrite(&self, html: &str, stamp: Stamp) -> String {
        let mut out = self.table.rewrite(html, |n| self.url(n, stamp));
        if self.opens
            && let Some(end) = out.rfind("</body>")
        {
            let image = format!(
                "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0;width:1px;height:1px\">",
                crate::html::escape(&self.url(0, stamp))
            );
            out.insert_str(end, &image);
        }
        out
    }
}
