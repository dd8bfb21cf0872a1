#[cfg(test)]
use super::*;

fn outcomes(list: &mut Recipients) -> Vec<(u64, bool)> {
    list.by_ref()
        .map(|r| r.unwrap())
        .map(|r| r.map_or_else(|s| (s.line, false), |r| (r.line, true)))
        .collect()
}

#[test]
fn a_second_pass_remembers_only_the_repeated_addresses() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let csv = "email\na@x.org\nb@x.org\nA@x.org\nc@x.org\na@x.org\n";
    std::fs::write(file.path(), csv).unwrap();
    let mut first = Recipients::open(file.path()).unwrap();
    let expected = outcomes(&mut first);
    assert_eq!(expected, [(2, true), (3, true), (4, false), (5, true), (6, false)]);
    let known = first.into_known();

    let mut second = Recipients::open_known(file.path(), known.clone()).unwrap();
    assert_eq!(outcomes(&mut second), expected);
    assert_eq!(second.seen.len(), 1, "only a@x.org was remembered");

    // Edited in between: read as a new list, every address remembered.
    std::fs::write(file.path(), format!("{csv}b@x.org\n")).unwrap();
    let mut edited = Recipients::open_known(file.path(), known).unwrap();
    assert_eq!(outcomes(&mut edited).last(), Some(&(7, false)));
    assert_eq!(edited.seen.len(), 3);
}

fn rows(csv: &str) -> Vec<Row> {
    Recipients::from_reader(
        Path::new("r.csv"),
        Box::new(std::io::Cursor::new(csv.as_bytes().to_vec())),
    )
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

#[test]
fn bom_and_header_names_are_normalized() {
    let r = rows("\u{feff}Email,First Name\nalice@example.org,Alice\n");
    assert_eq!(r[0].as_ref().unwrap().fields["first_name"], "Alice");
}

#[test]
fn duplicates_are_case_insensitive_after_trimming_first_wins() {
    let r = rows("email,name\nAlice@Example.org,A\n  alice@example.ORG ,B\n");
    assert_eq!(r[0].as_ref().unwrap().fields["name"], "A");
    let skipped = r[1].as_ref().unwrap_err();
    assert_eq!((skipped.line, skipped.reason), (3, SkipReason::Duplicate));
}

#[test]
fn invalid_short_and_long_rows_are_skipped_with_their_line() {
    let long = format!("{}@example.org", "a".repeat(65));
    let r = rows(&format!(
        "email,name\nnot-an-address,X\nbob@example.org\n{long},Y\ncarol@example.org,C,extra\ndave@localhost,D\n"
    ));
    let reasons: Vec<(u64, SkipReason)> = r
        .iter()
        .map(|r| r.as_ref().map_err(|s| (s.line, s.reason)).unwrap_err())
        .collect();
    assert_eq!(
        reasons,
        vec![
            (2, SkipReason::InvalidAddress),
            (3, SkipReason::WrongFieldCount),
            (4, SkipReason::InvalidAddress),
            (5, SkipReason::WrongFieldCount),
            (6, SkipReason::InvalidAddress),
        ]
    );
}

#[test]
fn status_column_skips_unsubscribed_and_bounced() {
    let r = rows("email,status\na@example.org,active\nb@example.org,Unsubscribed\nc@example.org,bounced\n");
    assert!(r[0].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err().reason, SkipReason::Unsubscribed);
    assert_eq!(r[2].as_ref().unwrap_err().reason, SkipReason::Bounced);
}

#[test]
fn line_breaks_in_fields_never_pass() {
    let r = rows("email,name\na@example.org,\"Eve\r\nBcc: victim@example.org\"\n");
    assert_eq!(r[0].as_ref().unwrap_err().reason, SkipReason::UnsafeValue);
}

#[test]
fn lines_are_counted_as_an_editor_counts_them() {
    let lines = |csv: &str| -> Vec<u64> {
        rows(csv)
            .iter()
            .map(|r| r.as_ref().map_or_else(|s| s.line, |r| r.line))
            .collect()
    };
    assert_eq!(
        lines("email\r\na@x.org\r\nb@x.org\r\n\r\n\r\nfoo@\r\nc@x.org\r\n"),
        [2, 3, 6, 7]
    );
    assert_eq!(lines("email\na@x.org\n\n\nfoo@\n"), [2, 5]);
    assert_eq!(lines("email,note\na@x.org,\"two\nlines\"\nb@x.org,x\n"), [2, 4]);
    let r = rows("email\r\na@x.org\r\n\r\nfoo@\r\n");
    assert_eq!(r[1].as_ref().unwrap_err().line, 4);
}

#[test]
fn overlong_fields_skip_their_row_only() {
    let big = "x".repeat(MAX_FIELD_BYTES + 1);
    let huge = "y".repeat(MAX_LINE_BYTES + 10);
    let r = rows(&format!(
        "email,name\na@x.org,{big}\nb@x.org,\"{huge}\nc@x.org,Carol\nd@x.org,{huge}\ne@x.org,Eve\n"
    ));
    let got: Vec<(u64, Option<SkipReason>)> = r
        .iter()
        .map(|r| r.as_ref().map_or_else(|s| (s.line, Some(s.reason)), |r| (r.line, None)))
        .collect();
    assert_eq!(
        got,
        [
            (2, Some(SkipReason::TooLong)),
            (3, Some(SkipReason::TooLong)),
            (4, None),
            (5, Some(SkipReason::TooLong)),
            (6, None)
        ]
    );
    assert!(
        r[0].as_ref()
            .unwrap_err()
            .detail
            .contains("column `name` holds 64 KB; a field may hold 64 KB")
    );
}

#[test]
fn idn_domains_become_ascii() {
    assert_eq!(
        normalize_address(" jörg@bücher.example ").unwrap(),
        "jörg@xn--bcher-kva.example"
    );
    assert_eq!(normalize_address("a@bücher.de").unwrap(), "a@xn--bcher-kva.de");
}

#[test]
fn missing_email_column_is_an_error() {
    let err = Recipients::from_reader(
        Path::new("r.csv"),
        Box::new(std::io::Cursor::new(b"mail,name\n".to_vec())),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .starts_with("r.csv:1: the header row has no `email` column"),
        "{err}"
    );
}

#[test]
fn the_separator_is_found_in_the_header() {
    assert_eq!(super::delimiter(b"email,first_name\na@x.org,A"), b',');
    assert_eq!(super::delimiter(b"Email;First Name\r\na@x.org;A"), b';');
    assert_eq!(super::delimiter(b"email\tname\n"), b'\t');
    assert_eq!(super::delimiter(b"\"last, first\";email\n"), b';');
    assert_eq!(super::delimiter(b"email\n"), b',');
}
