//! The machine-readable parts of reports: `message/delivery-status` (RFC 3464) and
//! `message/feedback-report` (RFC 5965) share one syntax, groups of header fields separated by
//! blank lines, so one reader serves both.

/// One group of fields, names in lower case, continuation lines unfolded.
#[derive(Debug, Default)]
pub struct Group {
    fields: Vec<(String, String)>,
}

impl Group {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Splits `text` into groups. Lines that are not fields (some servers add prose) are skipped.
/// A recipient's fields open a new group even without the blank line before them, which some
/// servers leave out: a second Final-Recipient, or a second Original-Recipient, is the next
/// recipient's (Postfix writes Final- before Original-Recipient, RFC 3464 the other way).
pub fn groups(text: &str) -> Vec<Group> {
    let mut groups = vec![Group::default()];
    for line in text.lines() {
        let opens_recipient = {
            let name = line.split_once(':').map_or("", |(n, _)| n).trim().to_ascii_lowercase();
            (name == "final-recipient" || name == "original-recipient")
                && groups.last().is_some_and(|g| g.get(&name).is_some())
        };
        if opens_recipient {
            groups.push(Group::default());
        }
        let last = groups.last_mut().expect("there is always a group");
        if line.trim().is_empty() {
            if !last.is_empty() {
                groups.push(Group::default());
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = last.fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':')
            && !name.is_empty()
            && !name.contains(' ')
        {
            last.fields
                .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// The address of a typed field (`rfc822; Kijitora@Example.com`), in lower case.
pub fn address(value: &str) -> Option<String> {
    let value = value.split_once(';').map_or(value, |(_, v)| v);
    clean_address(value)
}

/// `<Kijitora@Example.com>` or `"x" <a@b>` as `kijitora@example.com`; `None` when it has no @.
/// A quoted local part keeps its quotes (`"john doe"@example.org`); a source route
/// (`<@relay.example:a@b>`, RFC 5321's obsolete A-d-l) is dropped.
pub fn clean_address(value: &str) -> Option<String> {
    let value = match (value.find('<'), value.rfind('>')) {
        (Some(start), Some(end)) if start < end => &value[start + 1..end],
        _ => value,
    };
    let mut value = value.trim();
    if value.starts_with('@')
        && let Some((_, rest)) = value.split_once(':')
    {
        value = rest.trim();
    }
    // A quoted local part: `"..."@domain`, quotes and all.
    let quoted = value.starts_with('"')
        && value[1..]
            .find('"')
            .is_some_and(|end| value[end + 2..].starts_with('@'));
    let value = if quoted {
        value.trim_end_matches(['"', '\'', '>', '.', ',', ';', ':'])
    } else {
        value.trim_matches(['"', '\'', '<', '>', '.', ',', ';', ':'])
    };
    let (local, domain) = value.rsplit_once('@')?;
    let spaces = |s: &str| s.chars().any(char::is_whitespace);
    if local.is_empty() || domain.is_empty() || spaces(domain) || (!quoted && spaces(local)) {
        return None;
    }
    Some(value.to_lowercase())
}

/// A Diagnostic-Code without its type (`smtp; 550 ...` -> `550 ...`).
pub fn diagnostic(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.contains(' ') && kind.len() < 12 => rest.trim(),
        _ => value.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_typed_values() {
        let g = groups(
            "Reporting-MTA: dns; a.example\n\nFinal-Recipient: rfc822; <Neko@Example.JP>\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1\n  user unknown\n",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(
            address(g[1].get("final-recipient").unwrap()).unwrap(),
            "neko@example.jp"
        );
        assert_eq!(
            diagnostic(g[1].get("diagnostic-code").unwrap()),
            "550 5.1.1 user unknown"
        );
        assert_eq!(clean_address("\"Neko\" <a@b.example>"), Some("a@b.example".into()));
        assert_eq!(clean_address("no address"), None);
    }

    #[test]
    fn quoted_local_parts_source_routes_and_recipients_without_a_blank_line() {
        assert_eq!(
            address("rfc822; \"john doe\"@example.org"),
            Some("\"john doe\"@example.org".into())
        );
        assert_eq!(
            address("rfc822; <\"j.o'brien\"@example.org>"),
            Some("\"j.o'brien\"@example.org".into())
        );
        assert_eq!(
            address("rfc822; <@relay1.example,@relay2.example:reader@example.org>"),
            Some("reader@example.org".into())
        );
        let g = groups(
            "Reporting-MTA: dns; a.example\n\nFinal-Recipient: rfc822; one@example.org\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 one: no such user\nFinal-Recipient: rfc822; two@example.org\nAction: failed\nStatus: 4.2.2\nDiagnostic-Code: smtp; 452 4.2.2 two: mailbox full\n",
        );
        assert_eq!(g.len(), 3);
        assert_eq!(g[1].get("status"), Some("5.1.1"));
        assert_eq!(
            address(g[2].get("final-recipient").unwrap()).as_deref(),
            Some("two@example.org")
        );
        assert_eq!(g[2].get("status"), Some("4.2.2"), "each keeps its own diagnostic");
        // A second Original-Recipient opens the next recipient too; one after a Final-Recipient
        // is the same recipient's, as Postfix writes them.
        let g = groups(
            "Original-Recipient: rfc822; a@example.org\nFinal-Recipient: rfc822; a@example.org\nStatus: 5.1.1\nOriginal-Recipient: rfc822; b@example.org\nFinal-Recipient: rfc822; b@example.org\nStatus: 5.2.2\n",
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].get("status"), Some("5.2.2"));
        let g = groups(
            "Final-Recipient: rfc822; a@example.org\nOriginal-Recipient: rfc822; alias@example.org\nStatus: 5.1.1\n",
        );
        assert_eq!(g.len(), 1);
    }
}
