//! What is a person's click and what is a machine's. Counted apart, by reason: a request that
//! is not a GET, an agent that says it is a program, a request that may have come within
//! `analytics.min_delay` of the message being made (link scanners fetch every link seconds after
//! delivery), and a burst (one client fetching many links of an issue at once, [`super::tally`]).

use serde::Serialize;

/// Why a request was or was not counted as a click.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A browser's GET: a person, as far as we can tell.
    Counted,
    /// HEAD, OPTIONS and the like: link checkers and Safe Links' pre-scan.
    Method,
    /// An empty agent, or one naming a library, bot, crawler or scanner.
    Agent,
    /// Within `analytics.min_delay` of the message being made.
    TooSoon,
    /// One client fetching `analytics.burst_links` or more links of an issue within
    /// `analytics.burst_window`.
    Burst,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Counted,
        Reason::Method,
        Reason::Agent,
        Reason::TooSoon,
        Reason::Burst,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Counted => "counted",
            Reason::Method => "method",
            Reason::Agent => "agent",
            Reason::TooSoon => "too_soon",
            Reason::Burst => "burst",
        }
    }

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Words in an agent that a program uses to name itself, lower case, each with where it is
/// seen.
const PROGRAM_AGENTS: &[(&str, &str)] = &[
    // The generic self-descriptions: Googlebot, bingbot, AhrefsBot, "Barracuda Sentinel
    // (EE)" scans, Slackbot-LinkExpanding, Discordbot, TelegramBot, Twitterbot.
    ("bot", "robots' own agents; most crawlers and chat link previews"),
    ("crawler", "crawlers (e.g. CCBot's 'crawler' page, Sogou web spider)"),
    ("spider", "Baiduspider, Sogou web spider, YandexSpider"),
    (
        "scanner",
        "security scanners (e.g. 'Qualys scanner', 'Nessus', url scanners)",
    ),
    (
        "preview",
        "link previews (Skype's 'SkypeUriPreview', 'Google Web Preview')",
    ),
    (
        "headlesschrome",
        "headless Chrome: link sandboxes such as urlscan and mail gateways",
    ),
    ("phantomjs", "scripted browsers used by scanners"),
    ("curl/", "curl's default agent"),
    ("wget/", "GNU Wget's default agent"),
    ("python-requests", "Python's requests library"),
    ("python-urllib", "Python's urllib"),
    ("aiohttp", "Python's aiohttp"),
    ("go-http-client", "Go's net/http default agent"),
    ("java/", "Java's HttpURLConnection default agent"),
    ("okhttp", "OkHttp's default agent (Android apps, scanners)"),
    ("apache-httpclient", "Apache HttpClient's default agent"),
    ("libwww-perl", "Perl's LWP"),
    ("node-fetch", "Node's node-fetch"),
    ("axios/", "Node's axios"),
    ("undici", "Node's built-in fetch"),
    ("facebookexternalhit", "Facebook's link preview"),
    ("whatsapp/", "WhatsApp's link preview"),
    (
        "microsoft office existence discovery",
        "Office checking a link exists before opening it",
    ),
    (
        "ms-office",
        "Office's own HTTP client (link checks from documents and Outlook)",
    ),
    ("barracuda", "Barracuda's mail gateway link protection"),
    ("mimecast", "Mimecast's URL Protect"),
    ("proofpoint", "Proofpoint's URL Defense"),
];

/// Whether the agent names a program rather than a person's browser.
pub fn is_program(agent: Option<&str>) -> bool {
    let Some(agent) = agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    let lower = agent.to_ascii_lowercase();
    PROGRAM_AGENTS.iter().any(|(word, _)| lower.contains(word))
}

/// The reason a request is a machine's, as far as the request alone tells: its method, its
/// agent, its time against the message's (minutes since 1970, the minute it was made).
pub fn judge(method_is_get: bool, agent: Option<&str>, now_secs: u64, made_minute: u64, min_delay_secs: u64) -> Reason {
    if !method_is_get {
        Reason::Method
    } else if is_program(agent) {
        Reason::Agent
    } else if now_secs < (made_minute + 1) * 60 + min_delay_secs {
        // The message may have been made at the end of its minute.
        Reason::TooSoon
    } else {
        Reason::Counted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

    #[test]
    fn people_browsers_count_and_programs_do_not() {
        assert!(!is_program(Some(FIREFOX)));
        assert!(!is_program(Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
        )));
        for agent in [
            "",
            " ",
            "curl/8.5.0",
            "python-requests/2.31",
            "Go-http-client/1.1",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
            "Microsoft Office Existence Discovery",
        ] {
            assert!(is_program(Some(agent)), "{agent}");
        }
        assert!(is_program(None));
    }

    #[test]
    fn the_reasons_in_their_order() {
        let made = 1000;
        let later = (made + 1) * 60 + 61;
        assert_eq!(judge(false, Some("curl/8"), later, made, 60), Reason::Method);
        assert_eq!(judge(true, Some("curl/8"), later, made, 60), Reason::Agent);
        assert_eq!(judge(true, Some(FIREFOX), made * 60 + 30, made, 60), Reason::TooSoon);
        assert_eq!(judge(true, Some(FIREFOX), later, made, 60), Reason::Counted);
    }
}
