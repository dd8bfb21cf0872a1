use super::*;
use std::io::Write;
use std::time::Duration;

fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(yaml.as_bytes()).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load(Some(f.path()), env)
}

#[test]
fn the_example_file_holds_every_key_with_its_default() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("newsletter.example.yaml");
    let mut c = Config::load(Some(&example), std::iter::empty()).unwrap();
    assert_eq!(c.file.take().as_deref(), Some(example.as_path()));
    assert_eq!(c, Config::default());
}

#[test]
fn defaults_apply_to_missing_keys() {
    let c = load("reply_to: community@openinfra.dev\n", &[]).unwrap();
    assert_eq!(c.reply_to.as_deref(), Some("community@openinfra.dev"));
    assert_eq!(c.from, Config::default().from);
}

#[test]
fn unknown_key_names_line_and_suggests() {
    let err = load("form:\n  name: X\n  address: x@y.org\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains(":1:1: unknown field `form`"), "{err}");
    assert!(err.ends_with("did you mean `from`?"), "{err}");
}

#[test]
fn environment_overrides_nested_keys() {
    let c = load(
        "from: { name: A, address: a@b.org }\n",
        &[
            ("NEWSLETTER_FROM_NAME", "Env Name"),
            ("NEWSLETTER_SITE_ORIGIN", "https://example.org"),
        ],
    )
    .unwrap();
    assert_eq!(c.from.name, "Env Name");
    assert_eq!(c.from.address, "a@b.org");
    assert_eq!(c.site_origin.as_deref(), Some("https://example.org"));
}

#[test]
fn list_keys_take_comma_separated_values_from_the_environment() {
    let c = load("{}", &[("NEWSLETTER_TEST_RECIPIENTS", "a@x.org, b@x.org")]).unwrap();
    assert_eq!(c.test_recipients, ["a@x.org", "b@x.org"]);
    let c = load(
        "{}",
        &[
            ("NEWSLETTER_TEST_RECIPIENTS", "[c@x.org]"),
            ("NEWSLETTER_THROTTLE_RETRY_DELAY", "250ms"),
        ],
    )
    .unwrap();
    assert_eq!(c.test_recipients, ["c@x.org"]);
    assert_eq!(c.throttle.retry_delay, Duration::from_millis(250));
}

#[test]
fn mistakes_name_their_key_line_or_variable() {
    let err = load("throttle:\n  rates: 10/s\n", &[]).unwrap_err().to_string();
    assert!(err.contains(":2:") && err.ends_with("did you mean `rate`?"), "{err}");
    let err = load("throttle:\n  rate: 10\n", &[]).unwrap_err().to_string();
    assert!(
        err.contains(":2: throttle.rate: `10` is not a rate: write messages per time unit"),
        "{err}"
    );
    let c = load("smtp:\n  timeout: 30\n", &[]).unwrap();
    assert_eq!(
        c.smtp.first().timeout,
        Duration::from_secs(30),
        "a bare number is seconds"
    );
    let err = load("{}", &[("NEWSLETTER_SMTP_PORT", "abc")]).unwrap_err().to_string();
    assert!(err.starts_with("NEWSLETTER_SMTP_PORT=\"abc\": "), "{err}");
    let err = load("throttle: { rate: off, concurrency: 0 }\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains(":1: throttle.concurrency: must be at least 1"), "{err}");
    let err = load("smtp:\n  host: x\n  port: 0\n", &[]).unwrap_err().to_string();
    assert!(err.contains(":3: smtp.port: must be at least 1"), "{err}");
    let c = load("{}", &[("NEWSLETTER_SMTP_HOTS", "x")]).unwrap();
    assert_eq!(
        c.warnings,
        [
            "NEWSLETTER_SMTP_HOTS is not a configuration variable, so it is ignored; did you mean `NEWSLETTER_SMTP_HOST`?"
        ]
    );
}

#[test]
fn smtp_is_one_relay_or_a_pool_with_its_own_secrets() {
    let c = load("smtp: { host: relay.example.org }\n", &[]).unwrap();
    assert!(!c.smtp.pooled);
    assert_eq!(c.smtp.first().name(), "relay.example.org");
    assert_eq!(
        c.smtp.first().secret_var("NEWSLETTER_SMTP_PASSWORD", false),
        "NEWSLETTER_SMTP_PASSWORD"
    );
    let pool = "smtp:\n  - { name: main, host: a.example.org, weight: 3 }\n  - { name: back-up, kind: ses, region: eu-west-1 }\n";
    let c = load(pool, &[("NEWSLETTER_SMTP_PASSWORD_MAIN", "secret")]).unwrap();
    assert!(c.smtp.pooled && c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.smtp.relays[0].weight, 3);
    assert_eq!(
        c.smtp.relays[1].secret_var("NEWSLETTER_SMTP_PASSWORD", true),
        "NEWSLETTER_SMTP_PASSWORD_BACK_UP"
    );
    let err = load(pool, &[("NEWSLETTER_SMTP_HOST", "x")]).unwrap_err().to_string();
    assert!(
        err.contains("smtp is a list of relays, so it cannot say which"),
        "{err}"
    );
    let err = load("smtp: [{ host: a }, { host: a }]\n", &[]).unwrap_err().to_string();
    assert!(err.contains("relay `a`: name is used by two relays"), "{err}");
    let err = load("smtp: [{ host: a, kind: ses }]\n", &[]).unwrap_err().to_string();
    assert!(err.contains("region is required for kind: ses"), "{err}");
    let err = load("smtp: { host: a, region: eu-west-1 }\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("smtp.region: is for kind: ses only"), "{err}");
    let err = load("smtp: []\n", &[]).unwrap_err().to_string();
    assert!(err.contains("the list of relays is empty"), "{err}");
}

#[test]
fn secrets_are_not_config_keys() {
    let c = load("{}", &[("NEWSLETTER_SMTP_PASSWORD", "hunter2")]).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn yaml_slips_in_the_configuration_say_what_to_do() {
    let err = load("smtp:\n  host: x\n port: 25\n", &[]).unwrap_err().to_string();
    assert!(err.contains(":3:") && err.contains("check the indentation"), "{err}");
    let err = load("from: { name: OpenInfra: news, address: a@b.org }\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains(":1:"), "{err}");
}

#[test]
fn a_misspelt_secret_is_named_among_the_secrets() {
    // Alone, it is an error naming both: the real one is missing.
    let err = load("{}", &[("NEWSLETTER_SMTP_PASWORD", "hunter2")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "NEWSLETTER_SMTP_PASWORD is set but NEWSLETTER_SMTP_PASSWORD is not: a misspelt secret? rename NEWSLETTER_SMTP_PASWORD to NEWSLETTER_SMTP_PASSWORD"
    );
    assert!(!err.contains("hunter2"));
    // Beside the real one, a warning.
    let c = load(
        "{}",
        &[
            ("NEWSLETTER_UNSUBSCRIBE_SECERT", "x"),
            ("NEWSLETTER_UNSUBSCRIBE_SECRET", "y"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.warnings,
        [
            "NEWSLETTER_UNSUBSCRIBE_SECERT is not a variable newsletter reads, so it is ignored; did you mean `NEWSLETTER_UNSUBSCRIBE_SECRET` (which is set)?"
        ]
    );
}

#[test]
fn a_one_click_url_is_https_unless_the_host_is_local() {
    for ok in [
        "https://openinfra.dev/newsletter/unsubscribe",
        "http://127.0.0.1:8026/unsubscribe",
        "http://localhost:8026/unsubscribe",
        "http://[::1]:8026/unsubscribe",
        "http://newsletter.test/unsubscribe",
        "HTTP://app.localhost/u",
    ] {
        assert!(super::one_click_url(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://openinfra.dev/newsletter/unsubscribe",
        "http://10.0.0.5/u",
        "ftp://x.org/u",
        "openinfra.dev/u",
    ] {
        assert!(super::one_click_url(bad).is_err(), "{bad}");
    }
}
