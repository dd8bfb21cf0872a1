//! Who a request comes from, for the per-client limits: the peer, or behind one of
//! `serve.trusted_proxies` the address that proxy saw. A forwarded header from anyone else is
//! the client's own text and decides nothing.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use axum::http::HeaderMap;

/// The proxies whose `X-Forwarded-For` is believed: addresses and networks.
#[derive(Debug, Default, Clone)]
pub struct Proxies(Vec<(IpAddr, u8)>);

impl Proxies {
    /// From the configuration's list (`127.0.0.1`, `10.0.0.0/8`, `::1`).
    pub fn parse(entries: &[String]) -> Result<Proxies> {
        let mut networks = Vec::with_capacity(entries.len());
        for entry in entries {
            let (ip, bits) = entry.split_once('/').unwrap_or((entry, ""));
            let Ok(ip) = ip.trim().parse::<IpAddr>() else {
                bail!("serve.trusted_proxies: `{entry}` is not an IP address or a network like 10.0.0.0/8");
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                "" => max,
                b => match b.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => bail!("serve.trusted_proxies: `{entry}`: the prefix length must be 0 to {max}"),
                },
            };
            networks.push((ip, bits));
        }
        Ok(Proxies(networks))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(net, bits)| same_prefix(*net, canonical(ip), *bits))
    }

    /// The client's address: the peer, or when the peer is a trusted proxy, the rightmost
    /// address of `X-Forwarded-For` that is not a trusted proxy itself (those to its left are
    /// whatever the client wrote).
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(canonical)?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            match hop.parse::<IpAddr>().map(canonical) {
                Ok(ip) if self.trusts(ip) => continue,
                Ok(ip) => return Some(ip),
                // A hop a trusted proxy would never write: stop believing the header there.
                Err(_) => return Some(peer),
            }
        }
        Some(peer)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn same_prefix(a: IpAddr, b: IpAddr, bits: u8) -> bool {
    let mask = |len: u32| {
        if bits == 0 {
            0
        } else {
            u128::MAX << (len - u32::from(bits))
        }
    };
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            (u128::from(u32::from(a)) & mask(32)) == (u128::from(u32::from(b)) & mask(32))
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a) & mask(128)) == (u128::from(b) & mask(128)),
        _ => false,
    }
}

/// What one client is counted as: an IPv4 address, or an IPv6 /64 (one subscriber's line
/// is given a whole /64, and rotating within it must not reset the count).
pub fn limit_key(client: Option<IpAddr>) -> String {
    match client {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(v4) => v4.to_string(),
        None => "unknown".into(),
    }
}

/// Requests per client in the last hour, for at most [`Limiter::CLIENTS`] clients: past that
/// the client heard from longest ago is forgotten first, so that memory stays bounded however
/// many addresses an attacker has.
#[derive(Default)]
pub struct Limiter(Mutex<HashMap<String, VecDeque<Instant>>>);

impl Limiter {
    pub const CLIENTS: usize = 100_000;

    /// Counts one more request from `client`; false when it is over `per_hour`.
    pub fn admit(&self, client: &str, per_hour: u32) -> bool {
        let hour = Duration::from_secs(3600);
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::CLIENTS && !map.contains_key(client) {
            map.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < hour));
            if map.len() >= Self::CLIENTS {
                // A tenth at a time, so that a flood of new addresses costs one sort per
                // 10,000 of them rather than a scan each.
                let mut by_age: Vec<(Option<Instant>, String)> = map
                    .iter()
                    .map(|(k, times)| (times.back().copied(), k.clone()))
                    .collect();
                let cut = Self::CLIENTS / 10;
                by_age.select_nth_unstable(cut);
                for (_, key) in by_age.drain(..=cut) {
                    map.remove(&key);
                }
            }
        }
        let times = map.entry(client.to_owned()).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= hour) {
            times.pop_front();
        }
        if times.len() >= per_hour as usize {
            return false;
        }
        times.push_back(now);
        true
    }

    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Whether a browser's `Origin` may post a form here: none (a client that is not a
/// browser), this server's own (the Origin's host is the request's Host), or one of
/// `allowed` (by default the origin of the sign-up URL, the site's own). Anything else is
/// another site's page posting in its visitor's name.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get("origin") else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    origin_host.is_some_and(|h| Some(h) == host)
        || allowed
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// `subscribe.allowed_origins`, or when empty the origin of the sign-up URL.
pub fn allowed_origins(config: &crate::config::Config) -> Vec<String> {
    match config.subscribe.allowed_origins.is_empty() {
        true => origin_of(&config.subscribe_url()).into_iter().collect(),
        false => config.subscribe.allowed_origins.clone(),
    }
}

/// `https://openinfra.dev/newsletter/subscribe` -> `https://openinfra.dev`.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn a_forwarded_header_counts_only_from_a_trusted_proxy() {
        let none = Proxies::default();
        let local = Some("127.0.0.1".parse().unwrap());
        let headers = forwarded("203.0.113.9, 198.51.100.7");
        assert_eq!(
            none.client(local, &headers),
            local,
            "loopback is not trusted by default"
        );
        let proxies = Proxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        assert_eq!(proxies.client(local, &headers), Some("198.51.100.7".parse().unwrap()));
        // Through two proxies of ours: the address the first one saw.
        let chain = forwarded("203.0.113.9, 198.51.100.7, 10.1.2.3");
        assert_eq!(proxies.client(local, &chain), Some("198.51.100.7".parse().unwrap()));
        // Junk where a proxy would have written an address: the peer.
        assert_eq!(proxies.client(local, &forwarded("evil, x")), local);
        let outside = Some("192.0.2.5".parse().unwrap());
        assert_eq!(proxies.client(outside, &headers), outside);
        assert!(Proxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(Proxies::parse(&["localhost".into()]).is_err());
    }

    #[test]
    fn forms_are_taken_from_the_sites_own_origins_or_none() {
        let allowed = vec!["https://openinfra.dev".to_owned()];
        let with = |origin: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert("host", "127.0.0.1:8026".parse().unwrap());
            if let Some(o) = origin {
                headers.insert("origin", o.parse().unwrap());
            }
            origin_allowed(&headers, &allowed)
        };
        assert!(with(None));
        assert!(with(Some("https://openinfra.dev")));
        assert!(with(Some("http://127.0.0.1:8026")));
        assert!(!with(Some("https://evil.example")));
        assert!(!with(Some("null")));
        assert!(!with(Some("https://openinfra.dev.evil.example")));
        assert_eq!(
            origin_of("https://OpenInfra.dev/newsletter/subscribe").as_deref(),
            Some("https://openinfra.dev")
        );
    }

    #[test]
    fn ipv6_clients_count_per_64_and_memory_is_bounded() {
        let a = limit_key(Some("2001:db8:1:2:aaaa::1".parse().unwrap()));
        let b = limit_key(Some("2001:db8:1:2:bbbb::9".parse().unwrap()));
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(
            limit_key(Some("::ffff:192.0.2.1".parse::<IpAddr>().map(canonical).unwrap())),
            "192.0.2.1"
        );
        let limiter = Limiter::default();
        assert!((0..3).all(|_| limiter.admit("192.0.2.1", 3)));
        assert!(!limiter.admit("192.0.2.1", 3));
        assert!(limiter.admit("192.0.2.2", 3));
        for i in 0..Limiter::CLIENTS + 10 {
            limiter.admit(&format!("client{i}"), 3);
        }
        assert!(limiter.clients() <= Limiter::CLIENTS, "{}", limiter.clients());
        assert!(
            !limiter.admit(&format!("client{}", Limiter::CLIENTS + 9), 1),
            "the newest stay"
        );
    }
}
