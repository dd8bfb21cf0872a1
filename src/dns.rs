//! DNS lookups for `newsletter doctor`: the records that make our mail trusted (DKIM, SPF,
//! DMARC) and the MX that takes its bounces. Through hickory-resolver, asking the system's
//! server (`/etc/resolv.conf`) or one given, as the tests give a local one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

/// A lookup that got no answer (a timeout, a server failure): not the same as "no record".
#[derive(Debug, thiserror::Error)]
#[error("the DNS lookup of {name} ({kind}) failed: {why}")]
pub struct DnsError {
    pub name: String,
    pub kind: &'static str,
    pub why: String,
}

pub struct Dns {
    resolver: TokioResolver,
    /// The server asked, for messages.
    pub server: String,
}

impl Dns {
    /// The system's resolver, or the server at `server` (`127.0.0.1:5353`), over UDP and TCP.
    pub fn new(server: Option<SocketAddr>) -> Result<Dns, DnsError> {
        let failed = |why: String| DnsError {
            name: "the resolver".into(),
            kind: "setup",
            why,
        };
        let mut builder = match server {
            Some(addr) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = addr.port();
                        c
                    })
                    .collect();
                let ns = NameServerConfig::new(addr.ip(), true, connections);
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => Resolver::builder_tokio().map_err(|e| failed(e.to_string()))?,
        };
        let options = builder.options_mut();
        options.timeout = Duration::from_secs(5);
        options.attempts = 2;
        let resolver = builder.build().map_err(|e| failed(e.to_string()))?;
        Ok(Dns {
            resolver,
            server: server.map_or_else(|| "the system's resolver".to_owned(), |a| a.to_string()),
        })
    }

    async fn answers(&self, name: &str, kind: RecordType) -> Result<Vec<RData>, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.lookup(fqdn.as_str(), kind).await {
            Ok(lookup) => Ok(lookup.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(DnsError {
                name: name.to_owned(),
                kind: kind_name(kind),
                why: e.to_string(),
            }),
        }
    }

    /// Whether `name` exists in DNS at all: NXDOMAIN is no; a name without records of the kind
    /// asked (a subdomain, an apex without SOA here) is yes.
    pub async fn exists(&self, name: &str) -> Result<bool, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.lookup(fqdn.as_str(), RecordType::SOA).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_nx_domain() => Ok(false),
            Err(e) if e.is_no_records_found() => Ok(true),
            Err(e) => Err(DnsError {
                name: name.to_owned(),
                kind: "SOA",
                why: e.to_string(),
            }),
        }
    }

    /// The TXT records at `name`, each one's strings joined (RFC 7208 3.3).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        Ok(self
            .answers(name, RecordType::TXT)
            .await?
            .into_iter()
            .filter_map(|data| match data {
                RData::TXT(txt) => Some(txt.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect()),
                _ => None,
            })
            .collect())
    }

    /// The MX hosts of `name`, most preferred first.
    pub async fn mx(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let mut hosts: Vec<(u16, String)> = self
            .answers(name, RecordType::MX)
            .await?
            .into_iter()
            .filter_map(|data| match data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii().trim_end_matches('.').to_owned())),
                _ => None,
            })
            .collect();
        hosts.sort();
        Ok(hosts.into_iter().map(|(_, h)| h).collect())
    }

    /// The addresses of `name`, IPv4 then IPv6.
    pub async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let mut ips = Vec::new();
        for kind in [RecordType::A, RecordType::AAAA] {
            for data in self.answers(name, kind).await? {
                match data {
                    RData::A(a) => ips.push(IpAddr::V4(a.0)),
                    RData::AAAA(a) => ips.push(IpAddr::V6(a.0)),
                    _ => {}
                }
            }
        }
        Ok(ips)
    }
}

fn kind_name(kind: RecordType) -> &'static str {
    match kind {
        RecordType::TXT => "TXT",
        RecordType::MX => "MX",
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        _ => "record",
    }
}
