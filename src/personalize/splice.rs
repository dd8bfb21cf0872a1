//! The body of every recipient's message as one splice: the multipart frame and the static
//! text of the text and HTML parts are quoted-printable encoded (and put in DKIM's relaxed
//! form) once per issue; per recipient only the filled parts are encoded, and the pieces are
//! joined into one buffer. Encoding the ~80 KB of an issue per recipient was most of the cost
//! of personalizing a message.
//!
//! Quoted-printable breaks lines by column, so a piece's encoding depends on where its line
//! started. Each static piece starts a line: a filled part ends with a soft line break
//! (`=` CRLF, which decoders remove) unless it ended one. A filled part starts where the
//! static piece before it ended, which is known once per issue.

use std::ops::Range;

use crate::dkim::{BodyHasher, relaxed_piece};

/// Which part of the message a template belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Text,
    Html,
}

#[derive(Debug)]
enum Piece {
    /// Encoded bytes in `Splice::bytes`, and their canonical form in `Splice::canonical`.
    Static {
        bytes: Range<usize>,
        canonical: Range<usize>,
    },
    /// Template part `index` of a part, encoded per recipient from `column`.
    Filled { which: Which, index: usize, column: usize },
}

/// A multipart/alternative body, text then HTML, with the parts of each template in order.
pub struct Splice {
    boundary: String,
    bytes: Vec<u8>,
    canonical: Vec<u8>,
    pieces: Vec<Piece>,
    /// The body hash of the pieces before the first filled one, and where those end.
    prefix_hash: BodyHasher,
    prefix: (usize, usize),
}

/// What builds a splice: the static text of each part of a template, `None` for the parts
/// filled per recipient.
pub struct Layout<'a> {
    pub boundary: &'a str,
    pub text: Vec<Option<&'a str>>,
    pub html: Vec<Option<&'a str>>,
}

impl Splice {
    pub fn new(layout: &Layout<'_>) -> Splice {
        let mut splice = Splice {
            boundary: layout.boundary.to_owned(),
            bytes: Vec::new(),
            canonical: Vec::new(),
            pieces: Vec::new(),
            prefix_hash: BodyHasher::default(),
            prefix: (0, 0),
        };
        let boundary = layout.boundary;
        let part_head = |kind: &str| {
            format!(
                "--{boundary}\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            )
        };
        let mut column = 0;
        splice.push_static(part_head("text/plain").as_bytes());
        for (which, parts) in [(Which::Text, &layout.text), (Which::Html, &layout.html)] {
            if which == Which::Html {
                splice.push_static(format!("\r\n{}", part_head("text/html")).as_bytes());
                column = 0;
            }
            for (index, part) in parts.iter().enumerate() {
                match part {
                    Some(text) => {
                        let mut encoded = Vec::with_capacity(text.len() + text.len() / 16);
                        column = quoted_printable(text, 0, &mut encoded);
                        splice.push_static(&encoded);
                    }
                    None => {
                        splice.pieces.push(Piece::Filled { which, index, column });
                        column = 0;
                    }
                }
            }
        }
        splice.push_static(format!("\r\n--{boundary}--\r\n").as_bytes());
        let first_filled = splice
            .pieces
            .iter()
            .position(|p| matches!(p, Piece::Filled { .. }))
            .unwrap_or(splice.pieces.len());
        for piece in splice.pieces.drain(..first_filled) {
            if let Piece::Static { bytes, canonical } = piece {
                splice.prefix_hash.update(&splice.canonical[canonical.clone()]);
                splice.prefix = (bytes.end, canonical.end);
            }
        }
        splice
    }

    /// Appends static bytes, to the piece before when that is static too.
    fn push_static(&mut self, encoded: &[u8]) {
        let at = (self.bytes.len(), self.canonical.len());
        self.bytes.extend_from_slice(encoded);
        match relaxed_piece(encoded) {
            Some(canonical) => self.canonical.extend_from_slice(&canonical),
            None => self.canonical.extend_from_slice(encoded),
        }
        let end = (self.bytes.len(), self.canonical.len());
        if let Some(Piece::Static { bytes, canonical }) = self.pieces.last_mut() {
            bytes.end = end.0;
            canonical.end = end.1;
        } else {
            self.pieces.push(Piece::Static {
                bytes: at.0..end.0,
                canonical: at.1..end.1,
            });
        }
    }

    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// The bytes it adds to every message.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends the body to `out`, `fill` giving the text of each filled part, and returns its
    /// DKIM body hash when `hash`.
    pub fn write<E>(
        &self,
        out: &mut Vec<u8>,
        hash: bool,
        mut fill: impl FnMut(Which, usize) -> Result<String, E>,
    ) -> Result<Option<crate::dkim::BodyHash>, E> {
        let mut hasher = hash.then(|| self.prefix_hash.clone());
        out.extend_from_slice(&self.bytes[..self.prefix.0]);
        for piece in &self.pieces {
            match piece {
                Piece::Static { bytes, canonical } => {
                    out.extend_from_slice(&self.bytes[bytes.clone()]);
                    if let Some(hasher) = &mut hasher {
                        hasher.update(&self.canonical[canonical.clone()]);
                    }
                }
                Piece::Filled { which, index, column } => {
                    let text = fill(*which, *index)?;
                    let start = out.len();
                    if quoted_printable(&text, *column, out) != 0 {
                        out.extend_from_slice(b"=\r\n");
                    }
                    if let Some(hasher) = &mut hasher {
                        match relaxed_piece(&out[start..]) {
                            Some(canonical) => hasher.update(&canonical),
                            None => hasher.update(&out[start..]),
                        }
                    }
                }
            }
        }
        Ok(hasher.map(BodyHasher::finish))
    }
}

/// Appends `text` quoted-printable (RFC 2045) from `column` of a line, with CRLF line ends and
/// lines of at most 76 characters, and returns the column it ends at. Ours rather than
/// lettre's: Markdown-made HTML is almost all plain ASCII, which this copies through. A space
/// or tab at the end of `text` is encoded, so that a piece never ends in white space.
pub fn quoted_printable(text: &str, column: usize, out: &mut Vec<u8>) -> usize {
    // Characters per line before the soft break `=`, which makes 76.
    const ROOM: usize = 75;
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let literal = |b: u8| matches!(b, b'!'..=b'<' | b'>'..=b'~' | b' ' | b'\t');
    let bytes = text.as_bytes();
    let mut column = column;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            out.extend_from_slice(b"\r\n");
            column = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        if column >= ROOM {
            out.extend_from_slice(b"=\r\n");
            column = 0;
        }
        // Copy the longest run of plain characters that fits on the line. A dot opening a
        // line is encoded, so that the message never needs SMTP dot-stuffing.
        let mut end = i;
        if !(column == 0 && b == b'.') {
            let limit = bytes.len().min(i + ROOM - column);
            end = i + plain_prefix(&bytes[i..limit]);
            while end < limit && literal(bytes[end]) {
                end += 1;
            }
        }
        // Space or tab ending a line would be stripped in transit: encode it.
        if end > i && matches!(bytes[end - 1], b' ' | b'\t') && matches!(bytes.get(end), None | Some(b'\r' | b'\n')) {
            end -= 1;
        }
        if end > i {
            out.extend_from_slice(&bytes[i..end]);
            column += end - i;
            i = end;
            continue;
        }
        if column + 3 > ROOM {
            out.extend_from_slice(b"=\r\n");
            column = 0;
        }
        out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        column += 3;
        i += 1;
    }
    column
}

/// How many bytes at the start of `s` are printable ASCII other than `=`, eight at a time
/// (the encoder's hot loop: nearly all of an HTML part is such bytes). Exact about whether a
/// word holds another byte, not about which: the caller finishes byte by byte.
fn plain_prefix(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut n = 0;
    while let Some(chunk) = s.get(n..n + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let control = w.wrapping_sub(0x20 * ONES) & !w & HIGH; // a byte below 0x20
        let high = (w.wrapping_add(ONES) | w) & HIGH; // a byte of 0x7F or more
        let eq = w ^ (u64::from(b'=') * ONES);
        let equals = eq.wrapping_sub(ONES) & !eq & HIGH; // a `=`
        if control | high | equals != 0 {
            break;
        }
        n += 8;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::{Layout, Splice, Which, quoted_printable};

    fn encode(text: &str, column: usize) -> Vec<u8> {
        let mut out = Vec::new();
        quoted_printable(text, column, &mut out);
        out
    }

    fn decode(encoded: &[u8]) -> String {
        let bytes = ::quoted_printable::decode(encoded, ::quoted_printable::ParseMode::Strict).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn quoted_printable_round_trips_and_keeps_lines_short() {
        let long_url = format!("<a href=\"https://example.org/?a=1&b={}\">x</a>", "y".repeat(200));
        // Every character up to U+00FF at every offset against the 8-byte words of the scan.
        let every_char: String = (0..3)
            .flat_map(|shift| std::iter::repeat_n('x', shift).chain((1u8..=255).map(char::from)))
            .collect();
        for text in [
            "plain ascii\nsecond line\n",
            "We’d like — café, naïve, 日本語\r\nand = signs == here",
            "trailing space \nand tab\t\n",
            ".leading dot\n..two\n.\n",
            long_url.as_str(),
            "",
            &every_char,
            &format!("{}\n.{}", "a".repeat(74), "b ".repeat(90)),
        ] {
            let encoded = encode(text, 0);
            assert_eq!(
                decode(&encoded),
                text.replace("\r\n", "\n").replace('\n', "\r\n"),
                "{text:?}"
            );
            let encoded = String::from_utf8(encoded).unwrap();
            assert!(encoded.split("\r\n").all(|l| l.len() <= 76), "{encoded}");
            assert!(
                !encoded.split("\r\n").any(|l| l.ends_with(' ') || l.ends_with('\t')),
                "{encoded}"
            );
        }
    }

    /// The splice of static text and filled parts decodes to the parts joined, keeps every
    /// line within 76 characters, and its pieces' body hash is the hash of the whole body.
    #[test]
    fn a_splice_is_the_parts_joined_and_hashes_as_the_whole() {
        let long = "word  and  spaces ".repeat(20);
        let text: Vec<Option<&str>> = vec![Some("Hello "), None, Some(&long), None, None, Some("\n.end\n")];
        let html: Vec<Option<&str>> = vec![Some("<p>x</p>"), None];
        let splice = Splice::new(&Layout {
            boundary: "=_b",
            text: text.clone(),
            html: html.clone(),
        });
        let values = ["Zoë  ", ".dot at a line's start\tand tab", "", "<a href=\"x\">y</a>\n"];
        let fill = |which: Which, index: usize| -> Result<String, ()> {
            Ok(match (which, index) {
                (Which::Text, 1) => values[0].repeat(30),
                (Which::Text, 3) => values[1].to_owned(),
                (Which::Text, 4) => values[2].to_owned(),
                (Which::Html, 1) => values[3].to_owned(),
                _ => unreachable!(),
            })
        };
        let mut out = b"Subject: x\r\n\r\n".to_vec();
        let at = out.len();
        let hash = splice.write(&mut out, true, fill).unwrap().unwrap();
        let body = &out[at..];
        let body_text = String::from_utf8(body.to_vec()).unwrap();
        assert!(body_text.split("\r\n").all(|l| l.len() <= 76), "{body_text}");
        let (text_part, html_part) = body_text.split_once("\r\n--=_b\r\nContent-Type: text/html").unwrap();
        let text_body = text_part.split_once("\r\n\r\n").unwrap().1;
        let html_body = html_part
            .split_once("\r\n\r\n")
            .unwrap()
            .1
            .strip_suffix("\r\n--=_b--\r\n")
            .unwrap();
        let joined = format!("Hello {}{long}{}{}\n.end\n", values[0].repeat(30), values[1], values[2]);
        assert_eq!(decode(text_body.as_bytes()), joined.replace('\n', "\r\n"));
        assert_eq!(
            decode(html_body.as_bytes()),
            format!("<p>x</p>{}", values[3]).replace('\n', "\r\n")
        );
        // The signer's own hash of the whole body, as dkimpy checks it elsewhere.
        assert_eq!(hash.as_ref(), crate::dkim::body_hash(body).as_ref());
    }
}
