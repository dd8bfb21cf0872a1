//! Whose newsletter this is. Every default names the OpenInfra Foundation (the tool was made
//! for its newsletter); a project of another organisation that kept some of them would send
//! its issues as OpenInfra's, so `check` says which.

use super::Config;

/// The foundation's own domains: links there are no sign of another organisation.
const OPENINFRA_DOMAINS: &[&str] = &["openinfra.dev", "openinfra.org", "openstack.org"];

/// The host of an `http(s)://` URL, lowercased, without port or brackets.
pub(crate) fn url_host(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.trim_end_matches('.').to_owned())
}

/// A host of a local trial: loopback, `localhost`, `.test` and `.localhost` names.
pub(crate) fn is_local_host(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".test")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_openinfra(host: &str) -> bool {
    OPENINFRA_DOMAINS
        .iter()
        .any(|d| host == *d || host.strip_suffix(d).is_some_and(|rest| rest.ends_with('.')))
}

fn domain_of(address: &str) -> Option<String> {
    Some(crate::address::domain(address)).filter(|d| !d.is_empty())
}

impl Config {
    /// Whether From is the foundation's own: its website's blog fields and sections apply.
    pub fn sends_as_openinfra(&self) -> bool {
        domain_of(&self.from.address).is_some_and(|d| is_openinfra(&d))
    }

    /// When the project's own links are at another organisation's domain while it still
    /// sends as the OpenInfra Foundation: that domain and the keys that keep OpenInfra's
    /// values. `issue_url` is the issue's `seo.url`.
    pub fn borrowed_identity(&self, issue_url: Option<&str>) -> Option<(String, Vec<&'static str>)> {
        let defaults = Config::default();
        let urls = [
            Some(self.unsubscribe.url.as_str()),
            self.archive.url.as_deref(),
            self.site_origin.as_deref(),
            self.subscribe.url.as_deref(),
            issue_url,
        ];
        let hosts = urls.into_iter().flatten().filter_map(url_host);
        let addresses = [Some(self.from.address.as_str()), self.return_path.as_deref()];
        let domains = addresses.into_iter().flatten().filter_map(domain_of);
        let own = hosts
            .chain(domains)
            .chain(self.dkim.domain.as_deref().map(str::to_ascii_lowercase))
            .find(|h| !is_local_host(h) && !is_openinfra(h))?;
        let openinfra_address = |a: &str| domain_of(a).is_some_and(|d| is_openinfra(&d));
        let consent = |text: &String| text.contains("OpenInfra") || text.contains("Open Infrastructure");
        let kept: Vec<&'static str> = [
            ("from.name", self.from.name == defaults.from.name),
            ("from.address", openinfra_address(&self.from.address)),
            ("list_id", self.list_id.to_ascii_lowercase().contains("openinfra")),
            ("address", self.address == defaults.address),
            ("unsubscribe.mailto", openinfra_address(&self.unsubscribe.mailto)),
            ("archive.title", self.archive.title == defaults.archive.title),
            ("subscribe.forms", self.subscribe.forms.values().any(consent)),
        ]
        .into_iter()
        .filter_map(|(key, kept)| kept.then_some(key))
        .collect();
        (!kept.is_empty()).then_some((own, kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("https://News.Example.org:8443/x?y").as_deref(),
            Some("news.example.org")
        );
        assert_eq!(url_host("http://[::1]:8026/unsubscribe").as_deref(), Some("::1"));
        assert_eq!(url_host("mailto:x@example.org"), None);
        assert!(is_local_host("127.0.0.1") && is_local_host("news.test") && !is_local_host("example.org"));
        assert!(is_openinfra("lists.openinfra.dev") && !is_openinfra("notopeninfra.dev"));
    }

    #[test]
    fn another_organisation_keeping_openinfra_values_is_named() {
        let trial = Config {
            unsubscribe: super::super::Unsubscribe {
                url: "http://127.0.0.1:8026/unsubscribe".into(),
                ..Default::default()
            },
            ..Config::default()
        };
        assert_eq!(trial.borrowed_identity(Some("https://openinfra.dev/blog/x")), None);
        assert_eq!(Config::default().borrowed_identity(None), None);

        let (own, kept) = trial
            .borrowed_identity(Some("https://katacontainers.io/blog/news"))
            .expect("another domain");
        assert_eq!(own, "katacontainers.io");
        assert_eq!(
            kept,
            [
                "from.name",
                "from.address",
                "list_id",
                "address",
                "unsubscribe.mailto",
                "archive.title",
                "subscribe.forms"
            ]
        );

        let mut own_sender = trial.clone();
        own_sender.from.address = "news@katacontainers.io".into();
        let (_, kept) = own_sender
            .borrowed_identity(None)
            .expect("from.address is another domain");
        assert!(!kept.contains(&"from.address") && kept.contains(&"address"));
    }
}
