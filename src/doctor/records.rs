//! The DNS records receivers judge our mail by: DKIM keys published and matching ours, SPF
//! covering the relays, DMARC with a report address, and an MX for the bounces.

use std::net::IpAddr;

use super::spf::{self, Spf};
use super::{Finding, Verdict, finding};
use crate::address::domain;
use crate::config::{Config, RelayKind, secret};
use crate::dkim::Signer;
use crate::dns::Dns;

pub async fn examine(config: &Config, dns: &Dns) -> Vec<Finding> {
    // A domain DNS does not know makes every record below "missing": one line says why
    // instead, since a resolver that cannot see the internet answers so for every name.
    let envelope = envelope_domain(config);
    let mut unknown = Vec::new();
    for name in [domain(&config.from.address), envelope.clone()] {
        if unknown.iter().any(|f: &Finding| f.subject == name) {
            continue;
        }
        match dns.exists(&name).await {
            Ok(true) => {}
            Ok(false) => unknown.push(finding(
                "dns",
                name,
                Verdict::Fix,
                format!(
                    "{} knows no such domain: if it is registered, this machine cannot see it in DNS (no internet?); --resolver names another server, --offline skips DNS",
                    dns.server
                ),
            )),
            Err(e) => unknown.push(finding("dns", name, Verdict::Fix, e.to_string())),
        }
    }
    if !unknown.is_empty() {
        return unknown;
    }
    let mut found = dkim(config, dns).await;
    found.extend(sender_policy(config, dns, &envelope).await);
    found.push(dmarc(config, dns).await);
    found.push(mx(dns, &envelope).await);
    found
}

/// The domain of the envelope sender (MAIL FROM), which SPF and bounces are about.
fn envelope_domain(config: &Config) -> String {
    let address = config
        .bounces
        .return_path
        .as_deref()
        .or(config.return_path.as_deref())
        .unwrap_or(&config.from.address);
    domain(address)
}

/// The value of `tag` in a `k=v; k=v` record.
fn tag<'a>(record: &'a str, tag: &str) -> Option<&'a str> {
    record.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        k.trim().eq_ignore_ascii_case(tag).then(|| v.trim())
    })
}

fn without_spaces(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

async fn dkim(config: &Config, dns: &Dns) -> Vec<Finding> {
    let Ok(Some(signer)) = Signer::from_config(config, secret) else {
        return Vec::new(); // said under secrets
    };
    let mut found = Vec::new();
    for record in signer.dns_records() {
        let ours = tag(&record.value, "p").map(without_spaces).unwrap_or_default();
        let verdict = match dns.txt(&record.name).await {
            Err(e) => finding("dns", record.name, Verdict::Fix, e.to_string()),
            Ok(published) => {
                let keys: Vec<String> = published
                    .iter()
                    .filter_map(|t| tag(t, "p").map(without_spaces))
                    .collect();
                if keys.contains(&ours) {
                    finding("dns", record.name, Verdict::Ok, "DKIM key published and matching ours")
                } else if keys.is_empty() {
                    finding(
                        "dns",
                        record.name.clone(),
                        Verdict::Fix,
                        format!(
                            "no DKIM key published: receivers cannot verify our signatures; publish TXT \"{}\" (`newsletter dkim` prints it)",
                            record.value
                        ),
                    )
                } else {
                    finding(
                        "dns",
                        record.name,
                        Verdict::Fix,
                        "another key is published than the one we sign with: every signature fails; publish ours (`newsletter dkim`) or set the key that matches",
                    )
                }
            }
        };
        found.push(verdict);
    }
    found
}

/// A relay on loopback: the local MTA, whose mail leaves from an address DNS does not tell.
const ON_THIS_MACHINE: &str = "on this machine: its mail leaves from this machine's public address";

/// The addresses each relay sends from, as far as DNS tells: (relay, addresses) or why not.
async fn relay_addresses(config: &Config, dns: &Dns) -> Vec<(String, Result<Vec<IpAddr>, String>)> {
    let mut out = Vec::new();
    for relay in &config.smtp.relays {
        let name = relay.name();
        let addresses = match (relay.kind, relay.host.as_deref()) {
            (RelayKind::Smtp, Some(host)) => match host.parse::<IpAddr>() {
                Ok(ip) => Ok(vec![ip]),
                Err(_) if crate::config::identity::is_local_host(host) => Err(ON_THIS_MACHINE.to_owned()),
                Err(_) => dns.ips(host).await.map_err(|e| e.to_string()),
            },
            _ => continue,
        };
        let addresses = addresses.and_then(|ips| {
            if ips.iter().any(IpAddr::is_loopback) {
                Err(ON_THIS_MACHINE.to_owned())
            } else {
                Ok(ips)
            }
        });
        out.push((name, addresses));
    }
    out
}

async fn sender_policy(config: &Config, dns: &Dns, envelope: &str) -> Vec<Finding> {
    let subject = format!("{envelope} (SPF)");
    let records = match spf::records(dns, envelope).await {
        Ok(r) => r,
        Err(e) => return vec![finding("dns", subject, Verdict::Fix, e.to_string())],
    };
    match records.as_slice() {
        [] => {
            return vec![finding(
                "dns",
                subject,
                Verdict::Fix,
                format!("no SPF record: publish TXT \"v=spf1 <your relays' ip4:/include:> -all\" at {envelope}"),
            )];
        }
        [_] => {}
        _ => {
            return vec![finding(
                "dns",
                subject,
                Verdict::Fix,
                format!(
                    "{} SPF records: receivers take none (permerror); merge them into one",
                    records.len()
                ),
            )];
        }
    }
    let mut found = Vec::new();
    if config.smtp.relays.iter().any(|r| r.kind == RelayKind::Ses) {
        let covered = records[0].to_ascii_lowercase().contains("include:amazonses.com");
        found.push(if covered {
            finding("dns", subject.clone(), Verdict::Ok, "includes amazonses.com (SES)")
        } else {
            finding(
                "dns",
                subject.clone(),
                Verdict::Fix,
                "SES sends for this domain but the record does not include:amazonses.com",
            )
        });
    }
    for (relay, addresses) in relay_addresses(config, dns).await {
        let ips = match addresses {
            Ok(ips) => ips,
            Err(why) => {
                found.push(finding(
                    "dns",
                    subject.clone(),
                    Verdict::Warning,
                    format!("relay {relay} is {why}, which this check cannot know: make sure the record names it"),
                ));
                continue;
            }
        };
        let mut uncovered = Vec::new();
        for ip in &ips {
            match spf::check(dns, envelope, *ip).await {
                Spf::Matched { qualifier: '+', .. } => {}
                Spf::PermError(e) | Spf::TempError(e) => {
                    uncovered.push(format!("{ip} ({e})"));
                }
                Spf::Matched { mechanism, .. } => uncovered.push(format!("{ip} (matched by {mechanism})")),
                Spf::NoMatch | Spf::None => uncovered.push(ip.to_string()),
            }
        }
        found.push(if uncovered.is_empty() {
            finding(
                "dns",
                subject.clone(),
                Verdict::Ok,
                format!("covers relay {relay} ({})", join(&ips)),
            )
        } else {
            finding(
                "dns",
                subject.clone(),
                Verdict::Fix,
                format!(
                    "does not let relay {relay} send: {}; add ip4:/ip6: for it, or the include: its provider documents",
                    uncovered.join(", ")
                ),
            )
        });
    }
    if found.is_empty() {
        found.push(finding("dns", subject, Verdict::Ok, "an SPF record is published"));
    }
    found
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
}

async fn dmarc(config: &Config, dns: &Dns) -> Finding {
    let from = domain(&config.from.address);
    // The record of the From domain, else of its organisational domain (its last two labels:
    // right for most; a public suffix list would be exact).
    let labels: Vec<&str> = from.split('.').collect();
    let organisational = labels[labels.len().saturating_sub(2)..].join(".");
    let mut names = vec![format!("_dmarc.{from}")];
    if organisational != from {
        names.push(format!("_dmarc.{organisational}"));
    }
    for name in &names {
        let records = match dns.txt(name).await {
            Ok(r) => r,
            Err(e) => return finding("dns", name.clone(), Verdict::Fix, e.to_string()),
        };
        let Some(record) = records
            .iter()
            .find(|r| r.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
        else {
            continue;
        };
        let policy = tag(record, "p").unwrap_or("");
        if !["none", "quarantine", "reject"].contains(&policy.to_ascii_lowercase().as_str()) {
            return finding(
                "dns",
                name.clone(),
                Verdict::Fix,
                "a DMARC record without a valid p=: receivers ignore it",
            );
        }
        return match tag(record, "rua") {
            Some(rua) => finding(
                "dns",
                name.clone(),
                Verdict::Ok,
                format!("DMARC p={policy}, reports to {rua}"),
            ),
            None => finding(
                "dns",
                name.clone(),
                Verdict::Warning,
                format!(
                    "DMARC p={policy} without rua=: no receiver reports what it sees; add rua=mailto:dmarc-reports@{from} and let `newsletter dmarc` read them"
                ),
            ),
        };
    }
    finding(
        "dns",
        names[0].clone(),
        Verdict::Fix,
        format!(
            "no DMARC record: Gmail and Yahoo require one of bulk senders; publish TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@{from}\""
        ),
    )
}

async fn mx(dns: &Dns, envelope: &str) -> Finding {
    let subject = format!("{envelope} (MX)");
    match dns.mx(envelope).await {
        Ok(hosts) if hosts.is_empty() => finding(
            "dns",
            subject,
            Verdict::Fix,
            "no MX: bounces to the return path have nowhere to go; publish the MX of the bounce mailbox",
        ),
        Ok(hosts) => finding(
            "dns",
            subject,
            Verdict::Ok,
            format!("bounces go to {}", hosts.join(", ")),
        ),
        Err(e) => finding("dns", subject, Verdict::Fix, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_domains() {
        assert_eq!(
            tag("v=DMARC1; p=none; rua=mailto:d@example.org", "rua"),
            Some("mailto:d@example.org")
        );
        assert_eq!(tag("v=DKIM1; k=rsa; P = AB CD", "p"), Some("AB CD"));
        assert_eq!(domain("Bounces+{token}@Lists.Example.org"), "lists.example.org");
    }
}
