//! `newsletter dkim`: the DNS records that make the configured DKIM keys verifiable.

use std::path::Path;

use anyhow::{Result, bail};
use newsletter::dkim::Signer;

use crate::Exit;
use crate::cli::Format;

/// A TXT record's strings hold at most 255 characters each (RFC 1035); longer values are
/// split into several quoted strings, which resolvers join.
const TXT_STRING: usize = 255;

pub fn run(config_path: Option<&Path>, format: Format) -> Result<Exit> {
    let config = super::load_config(config_path, false)?;
    let Some(signer) = Signer::from_config(&config, newsletter::config::secret)? else {
        bail!("no DKIM key is configured: set dkim.selector (and dkim.ed25519_selector for a second signature)");
    };
    let records = signer.dns_records();
    match format {
        Format::Json => {
            let list: Vec<_> = records
                .iter()
                .map(|r| serde_json::json!({ "name": r.name, "type": "TXT", "value": r.value }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Format::Text => {
            println!("; Publish in DNS, then check with: dig +short TXT NAME");
            for r in &records {
                let strings: Vec<String> = r
                    .value
                    .as_bytes()
                    .chunks(TXT_STRING)
                    .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                    .collect();
                println!("{}. 3600 IN TXT ( {} )", r.name, strings.join(" "));
            }
        }
    }
    Ok(Exit::Success)
}
