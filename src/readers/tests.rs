//! The precedence table, case by case, on a real ledger file.

use super::*;

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("state/newsletter.db")).unwrap();
    (dir, ledger)
}

const A: &str = "alice@example.org";
const WEEK: Duration = Duration::from_secs(7 * 86_400);

fn one_click(l: &mut Ledger, issue: &str) -> Change {
    unsubscribe(l, A, "one-click", Some(issue), json!({ "remote": "192.0.2.1" })).unwrap()
}

fn event(l: &mut Ledger, kind: Kind) -> Change {
    record(l, A, kind, "test", None, json!({ "note": "test" })).unwrap()
}

fn kind(l: &Ledger) -> Option<Kind> {
    standing(l, A).unwrap().kind()
}

#[test]
fn the_readers_own_unsubscribe_is_lifted_by_their_resubscribe() {
    let (_d, mut l) = ledger();
    assert!(one_click(&mut l, "2025-07").newly_suppressed());
    assert!(l.is_suppressed(A).unwrap());
    assert_eq!(
        resubscribe(&mut l, A, Some("2025-07"), WEEK, json!({})).unwrap(),
        Resubscribed::Welcome
    );
    assert!(standing(&l, A).unwrap().is_mailable());
    assert!(!l.is_suppressed(A).unwrap());
    // Pressing it again changes nothing and says so.
    assert_eq!(
        resubscribe(&mut l, A, Some("2025-07"), WEEK, json!({})).unwrap(),
        Resubscribed::AlreadySubscribed
    );
}

#[test]
fn a_resubscribe_never_lifts_the_operator_or_a_complaint_that_came_later() {
    for stronger in [Kind::Suppressed, Kind::Complaint, Kind::HardBounce, Kind::SoftLimit] {
        let (_d, mut l) = ledger();
        one_click(&mut l, "2025-07");
        let change = event(&mut l, stronger);
        assert_eq!(change.after, Some(stronger), "{stronger:?} outranks the unsubscribe");
        assert_eq!(
            resubscribe(&mut l, A, Some("2025-07"), WEEK, json!({})).unwrap(),
            Resubscribed::Kept
        );
        assert_eq!(kind(&l), Some(stronger));
        assert!(l.is_suppressed(A).unwrap());
    }
}

#[test]
fn a_resubscribe_never_lifts_a_stronger_suppression_that_came_first() {
    let (_d, mut l) = ledger();
    event(&mut l, Kind::Complaint);
    one_click(&mut l, "2025-07");
    assert_eq!(kind(&l), Some(Kind::Complaint));
    assert_eq!(
        resubscribe(&mut l, A, Some("2025-07"), WEEK, json!({})).unwrap(),
        Resubscribed::Kept
    );
    assert_eq!(kind(&l), Some(Kind::Complaint));
}

#[test]
fn a_resubscribe_answers_its_own_links_unsubscribe_and_not_a_later_one() {
    let (_d, mut l) = ledger();
    one_click(&mut l, "2025-01");
    unsubscribe(&mut l, A, "mailto", Some("2025-07"), json!({ "message_id": "<m@x>" })).unwrap();
    // The January link undoes January's unsubscribe, not July's.
    assert_eq!(
        resubscribe(&mut l, A, Some("2025-01"), WEEK, json!({})).unwrap(),
        Resubscribed::Kept
    );
    assert_eq!(kind(&l), Some(Kind::Unsubscribed));
    // A link that unsubscribed no one lifts nothing.
    assert_eq!(
        resubscribe(&mut l, A, Some("2024-12"), WEEK, json!({})).unwrap(),
        Resubscribed::Kept
    );
    // July's own link does (and January's, which came before).
    assert_eq!(
        resubscribe(&mut l, A, Some("2025-07"), WEEK, json!({})).unwrap(),
        Resubscribed::Welcome
    );
}

#[test]
fn an_old_unsubscribe_is_not_undone_from_its_link() {
    let (_d, mut l) = ledger();
    one_click(&mut l, "2025-07");
    assert_eq!(
        resubscribe(&mut l, A, Some("2025-07"), Duration::ZERO, json!({})).unwrap(),
        Resubscribed::Kept
    );
    assert_eq!(kind(&l), Some(Kind::Unsubscribed));
    // The attempt is in the history.
    let events = l.reader_events(A).unwrap();
    assert_eq!(events.last().unwrap().kind, "resubscribed");
    assert_eq!(events.last().unwrap().answers, None);
}

#[test]
fn the_operator_lifts_everything_before_and_nothing_after() {
    let (_d, mut l) = ledger();
    one_click(&mut l, "2025-07");
    event(&mut l, Kind::Complaint);
    let change = remove(&mut l, A, "the reader wrote to ask").unwrap();
    assert_eq!((change.before, change.after), (Some(Kind::Complaint), None));
    assert!(!l.is_suppressed(A).unwrap());
    event(&mut l, Kind::HardBounce);
    assert_eq!(kind(&l), Some(Kind::HardBounce));
}

#[test]
fn confirming_a_new_subscription_lifts_bounces_and_unsubscribes_but_not_complaints() {
    let (_d, mut l) = ledger();
    event(&mut l, Kind::HardBounce);
    one_click(&mut l, "2025-07");
    assert_eq!(event(&mut l, Kind::Confirmed).after, None);
    let (_d, mut l) = ledger();
    event(&mut l, Kind::Complaint);
    assert_eq!(event(&mut l, Kind::Confirmed).after, Some(Kind::Complaint));
    let (_d, mut l) = ledger();
    event(&mut l, Kind::Suppressed);
    assert_eq!(event(&mut l, Kind::Confirmed).after, Some(Kind::Suppressed));
}

#[test]
fn the_firmest_suppression_decides_and_the_list_shows_it() {
    let (_d, mut l) = ledger();
    one_click(&mut l, "2025-07");
    let change = record(
        &mut l,
        A,
        Kind::Suppressed,
        "operator",
        None,
        json!({ "note": "GDPR objection" }),
    )
    .unwrap();
    assert_eq!(change.action("manual"), "suppressed (manual; was unsubscribed)");
    event(&mut l, Kind::SoftLimit);
    let list = l.suppressions().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].kind, "suppressed");
    assert!(list[0].reason.contains("GDPR objection"), "{}", list[0].reason);
}

#[test]
fn asking_twice_records_one_unsubscribe() {
    let (_d, mut l) = ledger();
    one_click(&mut l, "2025-07");
    let again = one_click(&mut l, "2025-07");
    assert_eq!(again.event, None);
    assert_eq!(l.reader_events(A).unwrap().len(), 1);
}

#[test]
fn a_forgotten_address_is_never_stored_again_and_never_mailed() {
    let (dir, mut l) = ledger();
    one_click(&mut l, "2025-07");
    let erased = forget(&mut l, A).unwrap();
    assert_eq!(erased.events, 1);
    assert!(matches!(standing(&l, A).unwrap(), Standing::Forgotten { .. }));
    assert!(l.is_suppressed("Alice@Example.org").unwrap());
    assert!(event(&mut l, Kind::Complaint).forgotten);
    assert!(l.reader_events(A).unwrap().is_empty());
    // Without the key file the ledger cannot tell, and says so rather than mail.
    drop(l);
    std::fs::remove_file(dir.path().join("state/newsletter.key")).unwrap();
    let l = Ledger::open(&dir.path().join("state/newsletter.db")).unwrap();
    let err = format!("{:#}", l.is_suppressed("bob@example.org").unwrap_err());
    assert!(err.contains("newsletter.key is missing"), "{err}");
}

#[test]
fn a_list_is_imported_in_one_pass_counted_by_outcome() {
    let (_d, mut l) = ledger();
    one_click(&mut l, "2025-07");
    let reader = |email: &str, projects: Option<&str>| Incoming {
        email: email.to_owned(),
        name: None,
        projects: projects.map(str::to_owned),
        evidence: json!({ "consent": "yes" }),
    };
    let first = import_all(
        &mut l,
        [
            reader("bo@example.org", Some("zuul")),
            reader(A, None),
            reader("cy@example.org", None),
        ],
    )
    .unwrap();
    assert_eq!(
        first,
        Imports {
            added: 2,
            known: 0,
            refused: 1,
            with_projects: 1
        }
    );
    // The reader who unsubscribed stays so; a second import changes nothing.
    assert_eq!(kind(&l), Some(Kind::Unsubscribed));
    let again = import_all(&mut l, [reader("bo@example.org", None)]).unwrap();
    assert_eq!((again.added, again.known), (0, 1));
    // The choices a send compiles editions for ahead.
    assert_eq!(l.distinct_choices(10).unwrap(), ["zuul"]);
}
