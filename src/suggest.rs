//! "Did you mean" for a misspelt name: a key, a variable, an element; and what to do about
//! the commonest YAML slips, where the parser's words do not say it.

/// `; did you mean `x`?` for the candidate nearest to `wrong`, if one is near enough.
pub fn did_you_mean<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    nearest(wrong, candidates)
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

/// The candidate nearest to `wrong` and its distance, if one is near enough.
pub fn nearest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> Option<(usize, &'a str)> {
    candidates
        .map(|c| (edit_distance(&wrong.to_ascii_lowercase(), &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// What to do about a YAML error (`message`, the parser's) at `line` (the text of the line it
/// names), for the two commonest slips: a value holding `: ` unquoted, and a key indented
/// differently from its siblings.
pub fn yaml_hint(message: &str, line: &str) -> Option<String> {
    if line.starts_with([' ', '\t']) && line.trim_start_matches(' ').starts_with('\t') {
        return Some("YAML indents with spaces, not tabs: replace the tab with spaces".to_owned());
    }
    if message.contains("mapping values are not allowed") {
        let (key, value) = line.split_once(':')?;
        let value = value.trim().replace('"', "\\\"");
        return Some(format!(
            "a value that holds `: ` must be quoted: {}: \"{value}\"",
            key.trim_end()
        ));
    }
    (message.contains("did not find expected key") || message.contains("block mapping")).then(|| {
        "check the indentation: keys under one parent start in the same column, indented with spaces".to_owned()
    })
}

/// serde's words for a value of the wrong kind name Rust's types (`expected u16`): say what
/// a person would write instead.
pub fn plain_types(message: &str) -> String {
    const TYPES: &[(&str, &str)] = &[
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u32", "expected a whole number of 0 or more"),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
    ];
    TYPES
        .iter()
        .fold(message.to_owned(), |m, (rust, plain)| m.replace(rust, plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_are_said_in_words() {
        assert_eq!(
            plain_types("invalid value: integer `99999`, expected u16"),
            "invalid value: integer `99999`, expected a whole number from 0 to 65535"
        );
        assert_eq!(
            yaml_hint("found character that cannot start any token", "\thost: x").unwrap(),
            "YAML indents with spaces, not tabs: replace the tab with spaces"
        );
    }

    #[test]
    fn yaml_slips_say_what_to_do() {
        assert_eq!(
            yaml_hint(
                "mapping values are not allowed in this context",
                "title: OpenStack: the news"
            )
            .unwrap(),
            "a value that holds `: ` must be quoted: title: \"OpenStack: the news\""
        );
        assert!(
            yaml_hint("did not find expected key", " port: 25")
                .unwrap()
                .contains("indentation")
        );
        assert_eq!(yaml_hint("invalid type", "x: y"), None);
    }
}
