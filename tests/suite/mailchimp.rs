//! Coming from Mailchimp: its audience export's three files, as Mailchimp writes them (a byte
//! order mark, `Email Address`, the consent columns, tags in quotes), imported as subscribers
//! with their consent kept verbatim and their project tags as choices, and as the readers' own
//! unsubscribes and hard bounces.

use serde_json::Value;

use crate::support::{Project, csv, run};

const HEADER: &str = "\u{feff}Email Address,First Name,Last Name,Address,Phone Number,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS";

fn member(email: &str, first: &str, optin: &str, confirm: &str, tags: &str) -> String {
    format!(
        "{email},{first},Okafor,,,2,\"{optin}\",198.51.100.7,\"{confirm}\",203.0.113.9,,,,,,,,\"2025-03-02 10:00:00\",123,abc,,\"{}\"",
        tags.replace('"', "\"\"")
    )
}

fn export(project: &Project, name: &str, header_extra: &str, rows: &[String]) -> std::path::PathBuf {
    let path = project.dir.path().join(name);
    let mut text = format!("{HEADER}{header_extra}\n");
    for r in rows {
        text += r;
        text += "\n";
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn mailchimp_exports_import_with_their_consent_tags_unsubscribes_and_bounces() {
    let project = Project::new(2525, &csv(1), "");
    let subscribed = export(
        &project,
        "subscribed_members_export.csv",
        "",
        &[
            member(
                "Ada@Example.org",
                "Ada",
                "2024-01-05 09:00:00",
                "2024-01-05 09:03:12",
                r#""Zuul","Kata Containers","VIP""#,
            ),
            member("bo@example.org", "Bo", "2023-06-01 12:00:00", "", ""),
            member("not an address", "X", "", "", ""),
        ],
    );
    // Without --from the file is recognized and the command named.
    let r = run(project
        .command()
        .args(["subscribers", "import", "--consent", "Yes"])
        .arg(&subscribed));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("this is a Mailchimp audience export"), "{}", r.stderr);
    assert!(r.stderr.contains("--from mailchimp"), "{}", r.stderr);

    let consent = "Send me Inside Open Infrastructure, monthly. Unsubscribe any time.";
    let r = run(project
        .command()
        .args(["subscribers", "import", "--from", "mailchimp", "--consent", consent])
        .arg(&subscribed));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Imported 2 subscriber(s)"), "{}", r.stdout);
    assert!(r.stdout.contains("(1 with projects from their tags)"), "{}", r.stdout);
    assert!(r.stdout.contains("1 row(s) skipped"), "{}", r.stdout);
    assert!(
        r.stderr.contains("subscribed_members_export.csv:4: `not an address`"),
        "{}",
        r.stderr
    );

    let dossier = |email: &str| -> Value {
        let r = run(project.command().args(["subscribers", "export", email]));
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    };
    let ada = dossier("ada@example.org");
    assert_eq!(ada["projects"], "zuul;kata-containers", "{ada:#}");
    let consent_record = &ada["consents"][0]["evidence"];
    assert_eq!(consent_record["wording"], consent);
    assert_eq!(consent_record["mailchimp"]["optin_time"], "2024-01-05 09:00:00");
    assert_eq!(consent_record["mailchimp"]["optin_ip"], "198.51.100.7");
    assert_eq!(consent_record["mailchimp"]["confirm_time"], "2024-01-05 09:03:12");
    assert_eq!(consent_record["mailchimp"]["confirm_ip"], "203.0.113.9");
    assert_eq!(ada["standing"]["standing"], "mailable", "{ada:#}");
    // `show` says it in the words `export` uses, and the evidence as text, not JSON.
    let r = run(project.command().args(["subscribers", "show", "ada@example.org"]));
    assert!(r.stdout.starts_with("ada@example.org: mailable\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains("mailchimp.optin_time: 2024-01-05 09:00:00"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("{\""), "no raw JSON: {}", r.stdout);
    let bo = dossier("bo@example.org");
    assert!(bo["projects"].is_null(), "everything: {bo:#}");
    assert!(bo["consents"][0]["evidence"]["mailchimp"].get("confirm_time").is_none());

    // The readers who left, and the addresses Mailchimp cleaned.
    let unsubscribed = export(
        &project,
        "unsubscribed_members_export.csv",
        ",UNSUB_TIME,UNSUB_CAMPAIGN_TITLE,UNSUB_CAMPAIGN_ID,UNSUB_REASON,UNSUB_REASON_OTHER",
        &[member("bo@example.org", "Bo", "2023-06-01 12:00:00", "", "")
            + ",\"2025-02-01 08:00:00\",January issue,c1,NORMAL,"],
    );
    let cleaned = export(
        &project,
        "cleaned_members_export.csv",
        ",CLEAN_TIME,CLEAN_CAMPAIGN_TITLE,CLEAN_CAMPAIGN_ID",
        &[member("gone@example.org", "Cy", "2022-01-01 00:00:00", "", "") + ",\"2024-11-01 00:00:00\",November,c9"],
    );
    let r = run(project
        .command()
        .args(["suppress", "import", "--from", "mailchimp"])
        .arg(&unsubscribed));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("as the readers' own unsubscribes"), "{}", r.stdout);
    let r = run(project
        .command()
        .args(["suppress", "import", "--from", "mailchimp"])
        .arg(&cleaned));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("as hard bounces"), "{}", r.stdout);
    let list = run(project.command().args(["suppress", "list", "--format", "json"]));
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    let kinds: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["email"].as_str().unwrap().to_owned(),
                s["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("bo@example.org".into(), "unsubscribed".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("gone@example.org".into(), "hard-bounce".into())),
        "{kinds:?}"
    );
    assert_ne!(dossier("bo@example.org")["standing"]["standing"], "mailable");
    // The subscribed export is not a suppression list.
    let r = run(project
        .command()
        .args(["suppress", "import", "--from", "mailchimp"])
        .arg(&subscribed));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("subscribers import --from mailchimp"), "{}", r.stderr);
}
