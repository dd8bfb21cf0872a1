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
pub fn groups(text: &str) -> Vec<Group> {
    let mut groups = vec![Group::default()];
    for line in text.lines() {
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
pub fn clean_address(value: &str) -> Option<String> {
    let value = match (value.find('<'), value.rfind('>')) {
        (Some(start), Some(end)) if start < end => &value[start + 1..end],
        _ => value,
    };
    let value = value
        .trim()
        .trim_matches(|c| matches!(c, '"' | '\'' | '<' | '>' | '.' | ',' | ';' | ':'));
    let (local, domain) = value.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || value.chars().any(char::is_whitespace) {
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
}
