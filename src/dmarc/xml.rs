//! A forgiving reader of the small XML that aggregate reports are written in: elements and text,
//! nothing else. Real reporters send XML that a strict parser refuses (a stray element around
//! `<feedback>`, bytes that are not UTF-8, an unescaped `<` in an address, a namespace prefix
//! on every name), so this reader never fails: it reads what is there. A value element (a leaf
//! of the schema, like `<header_from>`) holds everything up to its own end tag as text. Each
//! `<record>` is handed over as it closes, so a 100,000-row report is never one tree.

use memchr::{memchr, memmem};

/// An element: its name without namespace prefix, lowercased; its text; its children.
#[derive(Debug, Default)]
pub struct Element {
    pub name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first element named `name` at any depth, this one's children first.
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.child(name)
            .or_else(|| self.children.iter().find_map(|c| c.find(name)))
    }

    /// The trimmed text of the element at `path` below this one; empty when there is none.
    pub fn value(&self, path: &[&str]) -> &str {
        let mut at = self;
        for name in path {
            match at.child(name) {
                Some(child) => at = child,
                None => return "",
            }
        }
        at.text.trim()
    }
}

/// The elements of the aggregate report schemas (DMARC 1 and DMARCbis) that hold a value.
const VALUES: &[&str] = &[
    "org_name",
    "email",
    "extra_contact_info",
    "report_id",
    "begin",
    "end",
    "error",
    "generator",
    "domain",
    "adkim",
    "aspf",
    "p",
    "sp",
    "np",
    "pct",
    "fo",
    "testing",
    "discovery_method",
    "version_published",
    "version",
    "source_ip",
    "count",
    "disposition",
    "type",
    "comment",
    "envelope_to",
    "envelope_from",
    "header_from",
    "selector",
    "result",
    "human_result",
    "scope",
];

/// Reads `xml`, handing each `<record>` to `record` as it closes; returns a root holding
/// everything else (the report's metadata and policy, wherever they were).
pub fn read(xml: &[u8], record: &mut dyn FnMut(Element)) -> Element {
    let mut reader = Reader {
        stack: vec![Element::default()],
        record,
    };
    let mut i = 0;
    while i < xml.len() {
        let rest = &xml[i..];
        if rest[0] != b'<' {
            let end = memchr(b'<', rest).unwrap_or(rest.len());
            reader.text(&rest[..end]);
            i += end;
            continue;
        }
        i += if rest.starts_with(b"<!--") {
            skip_past(rest, b"-->")
        } else if let Some(cdata) = rest.strip_prefix(b"<![CDATA[") {
            let end = memmem::find(cdata, b"]]>").unwrap_or(cdata.len());
            reader.text_raw(&cdata[..end]);
            9 + (end + 3).min(cdata.len())
        } else if rest.starts_with(b"<?") || rest.starts_with(b"<!") {
            skip_past(rest, b">")
        } else if let Some(after) = rest.strip_prefix(b"</") {
            let name = name_at(after);
            reader.close(&local(name));
            2 + skip_past(after, b">")
        } else {
            reader.tag(rest)
        };
    }
    reader.finish()
}

struct Reader<'a> {
    /// The open elements, the root first.
    stack: Vec<Element>,
    record: &'a mut dyn FnMut(Element),
}

impl Reader<'_> {
    /// A tag at the start of `rest` (which begins with `<`): how many bytes it took.
    fn tag(&mut self, rest: &[u8]) -> usize {
        let name = name_at(&rest[1..]);
        let after = rest.get(1 + name.len()).copied();
        // `<` not followed by a name and the end of one is text (an unescaped `<` in a value).
        if name.is_empty() || !matches!(after, Some(b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/')) {
            self.text(b"<");
            return 1;
        }
        let Some(end) = tag_end(rest) else {
            // A tag cut off at the end of the file: nothing more to read.
            return rest.len();
        };
        let local = local(name);
        let empty = rest[..end].ends_with(b"/");
        let taken = end + 1;
        if empty {
            self.open(local);
            self.close_top();
            return taken;
        }
        if VALUES.contains(&local.as_str()) {
            // A value runs to its own end tag, whatever it holds.
            let body = &rest[taken..];
            let mut closing = b"</".to_vec();
            closing.extend_from_slice(name);
            if let Some(at) = memmem::find(body, &closing) {
                self.open(local);
                self.value(&body[..at]);
                self.close_top();
                return taken + at + skip_past(&body[at..], b">");
            }
        }
        self.open(local);
        taken
    }

    fn open(&mut self, name: String) {
        self.stack.push(Element {
            name,
            ..Element::default()
        });
    }

    /// Closes the innermost open element named `name`; an end tag that closes nothing is
    /// ignored.
    fn close(&mut self, name: &str) {
        if let Some(at) = self.stack.iter().skip(1).rposition(|e| e.name == name) {
            while self.stack.len() > at + 1 {
                self.close_top();
            }
        }
    }

    fn close_top(&mut self) {
        if self.stack.len() < 2 {
            return;
        }
        let Some(done) = self.stack.pop() else { return };
        if done.name == "record" {
            (self.record)(done);
        } else if let Some(parent) = self.stack.last_mut() {
            parent.children.push(done);
        }
    }

    fn text(&mut self, raw: &[u8]) {
        if let Some(top) = self.stack.last_mut()
            && top.children.is_empty()
        {
            unescape_into(&String::from_utf8_lossy(raw), &mut top.text);
        }
    }

    /// A value's bytes: text, with any CDATA sections in it taken as written.
    fn value(&mut self, mut body: &[u8]) {
        while let Some(at) = memmem::find(body, b"<![CDATA[") {
            self.text(&body[..at]);
            let cdata = &body[at + 9..];
            let end = memmem::find(cdata, b"]]>").unwrap_or(cdata.len());
            self.text_raw(&cdata[..end]);
            body = &cdata[(end + 3).min(cdata.len())..];
        }
        self.text(body);
    }

    fn text_raw(&mut self, raw: &[u8]) {
        if let Some(top) = self.stack.last_mut() {
            top.text.push_str(&String::from_utf8_lossy(raw));
        }
    }

    /// Closes what the file left open (a report cut short keeps what it has).
    fn finish(mut self) -> Element {
        while self.stack.len() > 1 {
            self.close_top();
        }
        self.stack.pop().unwrap_or_default()
    }
}

/// How many bytes of `rest` up to and including `end` (all of it when `end` never comes).
fn skip_past(rest: &[u8], end: &[u8]) -> usize {
    memmem::find(rest, end).map_or(rest.len(), |at| at + end.len())
}

/// The `>` ending the tag at the start of `rest`, outside quoted attribute values.
fn tag_end(rest: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in rest.iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// An XML name at the start of `bytes` (ASCII letters, digits, `_ - . :`), possibly empty.
fn name_at(bytes: &[u8]) -> &[u8] {
    let first_ok = bytes.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
    if !first_ok {
        return &[];
    }
    let len = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')))
        .unwrap_or(bytes.len());
    &bytes[..len]
}

/// A name without its namespace prefix, lowercased.
fn local(name: &[u8]) -> String {
    let name = name.rsplit(|b| *b == b':').next().unwrap_or(name);
    String::from_utf8_lossy(name).to_ascii_lowercase()
}

/// Appends `text` with XML's five entities and character references replaced; anything else
/// that starts with `&` stays as written.
fn unescape_into(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let entity = rest[1..].find(';').filter(|&n| n <= 10).map(|n| &rest[1..1 + n]);
        let decoded = entity.and_then(|e| match e {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => e
                .strip_prefix("#x")
                .or_else(|| e.strip_prefix("#X"))
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| e.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        });
        match (entity, decoded) {
            (Some(e), Some(c)) => {
                out.push(c);
                rest = &rest[e.len() + 2..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(xml: &str) -> (Element, Vec<Element>) {
        let mut found = Vec::new();
        let root = read(xml.as_bytes(), &mut |r| found.push(r));
        (root, found)
    }

    #[test]
    fn reads_records_one_by_one_and_the_rest_as_a_tree() {
        let (root, found) = records(
            "<?xml version=\"1.0\"?><!-- c --><feedback><report_metadata><org_name>a &amp; b</org_name></report_metadata>\
             <record><row><source_ip>192.0.2.1</source_ip><count>3</count></row></record>\
             <record><row><source_ip>192.0.2.2</source_ip><count>4</count></row></record></feedback>",
        );
        assert_eq!(root.find("report_metadata").unwrap().value(&["org_name"]), "a & b");
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].value(&["row", "count"]), "4");
        assert!(root.find("record").is_none());
    }

    #[test]
    fn reads_what_strict_parsers_refuse() {
        // A prefix on every name, a wrapper, an unescaped `<` in an address, bytes that are
        // not UTF-8, an end tag that closes nothing, a file cut short.
        let mut xml = b"<wrap><d:feedback xmlns:d=\"urn:ietf:params:xml:ns:dmarc-2.0\"><d:report_metadata><d:org_name>Ex\xffample</d:org_name></d:report_metadata>\
            <d:record><d:identifiers><d:header_from>Foo <foo@example.org></d:header_from></d:identifiers></stray></d:record>\
            <d:record><d:row><d:source_ip>192.0.2.9</d:source_ip><d:count>7"
            .to_vec();
        xml.extend_from_slice(b"");
        let mut found = Vec::new();
        let root = read(&xml, &mut |r| found.push(r));
        assert_eq!(
            root.find("report_metadata").unwrap().value(&["org_name"]),
            "Ex\u{fffd}ample"
        );
        assert_eq!(found[0].value(&["identifiers", "header_from"]), "Foo <foo@example.org>");
        assert_eq!(found[1].value(&["row", "source_ip"]), "192.0.2.9");
        assert_eq!(found[1].value(&["row", "count"]), "7");
    }

    #[test]
    fn entities_and_cdata() {
        let (root, _) = records("<a><org_name><![CDATA[x<y]]></org_name><email>&#x41;&#66;&lt;&bogus;&</email></a>");
        let a = root.child("a").unwrap();
        assert_eq!(a.value(&["org_name"]), "x<y");
        assert_eq!(a.value(&["email"]), "AB<&bogus;&");
    }
}
