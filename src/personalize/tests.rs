//! Personalization's own tests: header values, and stamps that follow a run's clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{MAX_NAME, Personalizer, header_value};
use crate::clicks::{Clicks, LinkTable};
use crate::compile::Rendered;
use crate::config::Config;
use crate::ledger::StoredLink;
use crate::recipients::Recipient;
use crate::unsubscribe::Secret;

#[test]
fn a_run_s_later_messages_carry_the_minute_they_were_made() {
    let rendered = Rendered {
        slug: "2025-07".into(),
        subject: "July".into(),
        preheader: None,
        web_url: None,
        send_at: None,
        mjml: String::new(),
        html: "<html><body><a href=\"https://openstack.org/\">OpenStack</a></body></html>".into(),
        text: "OpenStack".into(),
        sections: Vec::new(),
        warnings: Vec::new(),
    };
    let config = Config::default();
    let table = LinkTable::from_stored(vec![StoredLink {
        n: 1,
        url: "https://openstack.org/".into(),
        section: "OpenStack".into(),
        project: Some("openstack".into()),
    }]);
    let secret = Secret::new(vec![3u8; 32]);
    let clicks = Clicks::new(&config, "2025-07", table, &secret).unwrap();
    // Made when the run started, an hour ago.
    let started = SystemTime::now() - Duration::from_secs(3600);
    let first = Personalizer::new(&rendered, &config, secret)
        .unwrap()
        .with_date(started)
        .with_clicks(Arc::new(clicks))
        .unwrap();
    let later = first.renewed().expect("the minute has turned").unwrap();
    let link = |p: &Personalizer| {
        let html = p.parts(&Recipient::sample()).unwrap().html;
        let at = html.find("/r/2025-07/1/").unwrap();
        html[at..].split('"').next().unwrap().to_owned()
    };
    let minute = |p: &Personalizer| link(p).split('/').nth(4).unwrap().parse::<u64>().unwrap();
    assert_eq!(minute(&later) - minute(&first), 60, "{} {}", link(&first), link(&later));
    assert!(!link(&later).contains("openstack.org"));
}

#[test]
fn header_values_are_one_line_and_cut() {
    assert_eq!(header_value("Eve\r\nBcc: x@y", 50), "Eve Bcc: x@y");
    let long = "b".repeat(1200);
    let cut = header_value(&long, MAX_NAME);
    assert_eq!(cut.chars().count(), MAX_NAME);
    assert!(cut.ends_with('…'));
}

#[test]
fn a_test_send_s_recipient_is_named_without_a_line() {
    use super::PersonalizeError;
    let error = |line| {
        PersonalizeError::Recipient {
            email: "staff@openinfra.dev".into(),
            line,
            reason: "no `nickname` field".into(),
        }
        .to_string()
    };
    assert_eq!(error(0), "test recipient staff@openinfra.dev: no `nickname` field");
    assert_eq!(
        error(12),
        "recipient staff@openinfra.dev (line 12): no `nickname` field"
    );
}
