//! Does a domain's SPF record let an address send its mail? RFC 7208's evaluation of the
//! mechanisms a sender publishes (ip4, ip6, a, mx, include, redirect, all), within its limit of
//! ten lookups. Macros, `exists` and `ptr` are not evaluated: they never match here, so a
//! record that relies on them reads as not covering the address, with a note that says so.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use ipnet::IpNet;

use crate::dns::Dns;

/// What the record says of the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spf {
    /// The domain has no SPF record.
    None,
    /// A mechanism matched with this qualifier (`+` pass, `-` fail, `~` softfail, `?` neutral).
    Matched { qualifier: char, mechanism: String },
    /// Nothing matched and there is no `all`: neutral.
    NoMatch,
    /// The record cannot be evaluated (two records, too many lookups, a syntax error).
    PermError(String),
    /// A lookup got no answer.
    TempError(String),
}

/// RFC 7208 4.6.4: at most ten mechanisms that look up DNS.
const LOOKUP_LIMIT: usize = 10;

/// The SPF records at `domain` (TXT records starting `v=spf1`).
pub async fn records(dns: &Dns, domain: &str) -> Result<Vec<String>, crate::dns::DnsError> {
    Ok(dns
        .txt(domain)
        .await?
        .into_iter()
        .filter(|t| {
            let t = t.trim_start().to_ascii_lowercase();
            t == "v=spf1" || t.starts_with("v=spf1 ")
        })
        .collect())
}

/// Evaluates `domain`'s SPF record for mail from `ip`.
pub async fn check(dns: &Dns, domain: &str, ip: IpAddr) -> Spf {
    let mut lookups = 0;
    evaluate(dns, domain.to_owned(), ip, &mut lookups).await
}

fn evaluate<'a>(
    dns: &'a Dns,
    domain: String,
    ip: IpAddr,
    lookups: &'a mut usize,
) -> Pin<Box<dyn Future<Output = Spf> + Send + 'a>> {
    Box::pin(async move {
        let found = match records(dns, &domain).await {
            Ok(r) => r,
            Err(e) => return Spf::TempError(e.to_string()),
        };
        let record = match found.as_slice() {
            [] => return Spf::None,
            [one] => one.clone(),
            _ => {
                return Spf::PermError(format!(
                    "{domain} has {} SPF records; receivers take none of them",
                    found.len()
                ));
            }
        };
        let mut redirect = None;
        for term in record.split_whitespace().skip(1) {
            if let Some(target) = term.strip_prefix("redirect=") {
                redirect = Some(target.to_owned());
                continue;
            }
            if term.contains('=') {
                continue; // exp= and unknown modifiers
            }
            let (qualifier, mechanism) = match term.chars().next() {
                Some(q @ ('+' | '-' | '~' | '?')) => (q, &term[1..]),
                _ => ('+', term),
            };
            let lower = mechanism.to_ascii_lowercase();
            let (name, arg) = lower
                .split_once(':')
                .map_or((lower.as_str(), None), |(n, a)| (n, Some(a)));
            let (name, cidr) = match name.split_once('/') {
                Some((n, c)) => (n, Some(c)),
                None => (name, None),
            };
            let matched = match name {
                "all" => true,
                "ip4" | "ip6" => match arg.and_then(parse_net) {
                    Some(net) => net.contains(&ip),
                    None => return Spf::PermError(format!("`{term}` in {domain}'s SPF record is not an address")),
                },
                "a" | "mx" | "include" => {
                    *lookups += 1;
                    if *lookups > LOOKUP_LIMIT {
                        return Spf::PermError(format!(
                            "{domain}'s SPF record needs more than {LOOKUP_LIMIT} lookups; receivers stop there"
                        ));
                    }
                    let (target, prefix) = split_prefix(arg.unwrap_or(&domain), cidr);
                    if target.contains('%') {
                        false
                    } else if name == "include" {
                        match evaluate(dns, target.to_owned(), ip, lookups).await {
                            Spf::Matched { qualifier: '+', .. } => true,
                            Spf::TempError(e) => return Spf::TempError(e),
                            Spf::PermError(e) => return Spf::PermError(e),
                            Spf::None => return Spf::PermError(format!("include:{target} has no SPF record")),
                            _ => false,
                        }
                    } else {
                        let hosts = if name == "a" {
                            vec![target.to_owned()]
                        } else {
                            match dns.mx(target).await {
                                Ok(h) => h,
                                Err(e) => return Spf::TempError(e.to_string()),
                            }
                        };
                        let mut any = false;
                        for host in hosts {
                            match dns.ips(&host).await {
                                Ok(ips) => any |= ips.iter().any(|a| within(*a, ip, prefix)),
                                Err(e) => return Spf::TempError(e.to_string()),
                            }
                        }
                        any
                    }
                }
                // exists: and ptr need macros or reverse DNS: never counted as a match here.
                _ => false,
            };
            if matched {
                return Spf::Matched {
                    qualifier,
                    mechanism: term.to_owned(),
                };
            }
        }
        match redirect {
            Some(target) => {
                *lookups += 1;
                if *lookups > LOOKUP_LIMIT {
                    return Spf::PermError(format!("{domain}'s SPF record needs more than {LOOKUP_LIMIT} lookups"));
                }
                match evaluate(dns, target.clone(), ip, lookups).await {
                    Spf::None => Spf::PermError(format!("redirect={target} has no SPF record")),
                    other => other,
                }
            }
            None => Spf::NoMatch,
        }
    })
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `a:host/24` written as `a` `host/24`: the host and its prefix lengths (IPv4, IPv6).
fn split_prefix<'a>(target: &'a str, cidr: Option<&'a str>) -> (&'a str, Option<&'a str>) {
    match (target.split_once('/'), cidr) {
        (Some((host, prefix)), _) => (host, Some(prefix)),
        (None, cidr) => (target, cidr),
    }
}

/// Is `ip` within `prefix` bits (`24` or `24//64`) of `host_ip`?
fn within(host_ip: IpAddr, ip: IpAddr, prefix: Option<&str>) -> bool {
    let (v4, v6) = match prefix {
        Some(p) => {
            let (a, b) = p.split_once("//").map_or((p, ""), |(a, b)| (a, b));
            (a.parse().unwrap_or(32), b.parse().unwrap_or(128))
        }
        None => (32, 128),
    };
    let bits = if host_ip.is_ipv4() { v4 } else { v6 };
    IpNet::new(host_ip, bits).is_ok_and(|net| net.trunc().contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_prefixes() {
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        assert!(parse_net("192.0.2.0/24").is_some_and(|n| n.contains(&ip)));
        assert!(parse_net("192.0.2.77").is_some_and(|n| n.contains(&ip)));
        assert!(parse_net("nonsense").is_none());
        assert!(within("192.0.2.1".parse().unwrap(), ip, Some("24")));
        assert!(!within("192.0.2.1".parse().unwrap(), ip, None));
        assert_eq!(
            split_prefix("mail.example.org/24", None),
            ("mail.example.org", Some("24"))
        );
    }
}
