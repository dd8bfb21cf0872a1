use super::*;
use crate::html::escape;
use pulldown_cmark::Parser;

fn convert_md(md: &str) -> (Content, Vec<Warning>) {
    let lines = LineIndex::new(md, 1);
    let src = Source {
        file: Path::new("t.md"),
        lines: &lines,
        origin: Some("https://openinfra.dev"),
    };
    let events: Vec<Spanned<'_>> = Parser::new_ext(md, markdown_options()).into_offset_iter().collect();
    let mut warnings = Vec::new();
    let content = convert(&events, &src, &mut warnings);
    (content, warnings)
}

fn html(content: &Content) -> String {
    content
        .blocks
        .iter()
        .map(|b| match b {
            Block::Html { html } => html.clone(),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn kinds(w: &[Warning]) -> Vec<(Kind, Option<usize>)> {
    w.iter().map(|w| (w.kind, w.line)).collect()
}

#[test]
fn nested_lists_render_nested_and_indent_in_text() {
    let (c, w) = convert_md("* one\n* two\n\n  * two.a\n  * two.b\n* three\n");
    assert!(w.is_empty());
    assert_eq!(c.items, 3);
    let h = html(&c);
    assert!(h.contains("<li>two"), "{h}");
    assert!(h.contains("<ul>\n<li>two.a</li>"), "{h}");
    // A blank line in the source makes the list loose: its items are set apart.
    assert_eq!(c.text, "* one\n\n* two\n\n  * two.a\n  * two.b\n\n* three");
    let (c, _) = convert_md("* one\n* two\n  * two.a\n  * two.b\n* three\n");
    assert_eq!(c.text, "* one\n* two\n  * two.a\n  * two.b\n* three");
}

#[test]
fn ordered_lists_count_from_their_start() {
    let (c, _) = convert_md("3. c\n4. d\n");
    assert!(html(&c).starts_with("<ol start=\"3\">"));
    assert_eq!(c.text, "3. c\n4. d");
}

#[test]
fn bold_links_keep_both() {
    let (c, _) = convert_md("**[Celebrate](https://x.org/a)** now\n");
    assert_eq!(
        html(&c),
        "<p><strong><a href=\"https://x.org/a\">Celebrate</a></strong> now</p>"
    );
    assert_eq!(c.text, "Celebrate (https://x.org/a) now");
    assert_eq!(
        c.links,
        vec![Link {
            text: "Celebrate".into(),
            url: "https://x.org/a".into(),
            line: 1
        }]
    );
}

#[test]
fn hard_line_breaks_are_br_and_newlines() {
    let (c, _) = convert_md("first line\\\nsecond line  \nthird\n");
    assert_eq!(html(&c), "<p>first line<br>\nsecond line<br>\nthird</p>");
    assert_eq!(c.text, "first line\nsecond line\nthird");
}

#[test]
fn mailto_links_show_the_address_once() {
    let (c, w) = convert_md(
        "Email [events@openinfra.dev](mailto:events@openinfra.dev) or [Jimmy](mailto:jimmy@openinfra.dev).\n",
    );
    assert!(w.is_empty());
    assert!(html(&c).contains("<a href=\"mailto:events@openinfra.dev\">events@openinfra.dev</a>"));
    assert_eq!(
        c.text,
        "Email events@openinfra.dev or Jimmy (mailto:jimmy@openinfra.dev)."
    );
}

#[test]
fn gfm_tables_render_as_tables_and_rows() {
    let (c, _) = convert_md("| Date | Event |\n|---|---|\n| 3 July | [Bogota](https://m.org/b) |\n");
    let h = html(&c);
    assert!(
        h.starts_with("<table class=\"md-table\">\n<thead><tr><th>Date</th><th>Event</th></tr></thead><tbody>"),
        "{h}"
    );
    assert!(
        h.contains("<tr><td>3 July</td><td><a href=\"https://m.org/b\">Bogota</a></td></tr>"),
        "{h}"
    );
    assert_eq!(c.text, "Date | Event\n3 July | Bogota (https://m.org/b)");
    assert_eq!(c.items, 1);
}

#[test]
fn image_paragraph_is_an_image_block_with_resolved_src_and_alt_from_title() {
    let (c, w) = convert_md("![](/img/reg.png \"Summit registration\")\n");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        c.blocks,
        vec![Block::Image {
            src: "https://openinfra.dev/img/reg.png".into(),
            alt: "Summit registration".into(),
            title: Some("Summit registration".into()),
            href: None
        }]
    );
}

#[test]
fn linked_image_keeps_its_link() {
    let (c, _) = convert_md("[![Logo](/img/l.png)](https://openinfra.dev/)\n");
    assert!(
        matches!(&c.blocks[0], Block::Image { href: Some(h), alt, .. } if h == "https://openinfra.dev/" && alt == "Logo")
    );
}

#[test]
fn image_without_alt_is_a_warning_with_its_line() {
    let (_, w) = convert_md("Intro\n\n![](/img/reg-2-1600x900.png)\n");
    assert_eq!(kinds(&w), vec![(Kind::ImageWithoutAlt, Some(3))]);
}

#[test]
fn call_to_action_paragraphs_become_buttons() {
    let (c, _) = convert_md(
        "[READ MORE >>](https://openinfra.org/annual-report/2024)\n\n[MEET THE COMMITTEE](https://x.org/c)\n\n[Join us at FOSDEM!](https://x.org/f)\n",
    );
    assert_eq!(
        c.blocks[0],
        Block::Button {
            text: "READ MORE >>".into(),
            href: "https://openinfra.org/annual-report/2024".into()
        }
    );
    assert_eq!(
        c.blocks[1],
        Block::Button {
            text: "MEET THE COMMITTEE".into(),
            href: "https://x.org/c".into()
        }
    );
    assert!(
        matches!(&c.blocks[2], Block::Html { html } if html.contains("<a href=\"https://x.org/f\">Join us at FOSDEM!</a>"))
    );
}

#[test]
fn a_link_inside_a_sentence_is_not_a_button() {
    let (c, _) = convert_md("See [READ MORE](https://x.org) for more\n");
    assert!(matches!(&c.blocks[0], Block::Html { .. }));
}

#[test]
fn urls_are_sent_percent_encoded() {
    assert_eq!(
        encode_url("https://openinfra.dev/img/screenshot-2025-12-16-at-9.44.38\u{202f}am.png"),
        "https://openinfra.dev/img/screenshot-2025-12-16-at-9.44.38%E2%80%AFam.png"
    );
    assert_eq!(encode_url("https://x.org/a b.png"), "https://x.org/a%20b.png");
    assert_eq!(
        encode_url("https://x.org/caf%C3%A9?q=1&r=a|b"),
        "https://x.org/caf%C3%A9?q=1&r=a%7Cb"
    );
    assert_eq!(encode_url("https://x.org/100%"), "https://x.org/100%25");
    assert_eq!(
        encode_url("https://bücher.example:8443/ü"),
        "https://xn--bcher-kva.example:8443/%C3%BC"
    );
    assert_eq!(
        encode_url("https://x.org/?e={{email}}&n=\"x\""),
        "https://x.org/?e={{email}}&n=%22x%22"
    );
    let (content, w) = convert_md("![shot](</img/screenshot at 9.44\u{202f}am.png>)\n\n[link](https://x.org/ü)\n");
    assert!(w.is_empty(), "{w:?}");
    let html = html(&content);
    assert!(html.contains("/img/screenshot%20at%209.44%E2%80%AFam.png"), "{html}");
    assert!(html.contains("https://x.org/%C3%BC"), "{html}");
    assert!(content.text.contains("https://x.org/%C3%BC"), "{}", content.text);
    assert_eq!(escape("9.44.38\u{202f}am café\u{a0}!"), "9.44.38&#x202F;am café&#xA0;!");
}

#[test]
fn image_path_with_spaces_is_reported_as_unparsed() {
    let (_, w) = convert_md("Text\n\n![](/img/screenshot-2025-12-16-at-9.44.38 am.png \"title\")\n");
    assert_eq!(kinds(&w), vec![(Kind::UnparsedMarkdown, Some(3))]);
    let (_, w) = convert_md("![shot](</img/screenshot at 9.44.png>)\n");
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn empty_link_text_is_dropped_with_a_warning() {
    let (c, w) = convert_md("[](https://x.org/a)*[Register](https://x.org/r) now*\n");
    assert_eq!(kinds(&w), vec![(Kind::EmptyLinkText, Some(1))]);
    assert_eq!(html(&c), "<p><em><a href=\"https://x.org/r\">Register</a> now</em></p>");
    assert_eq!(c.links.len(), 1);
}

#[test]
fn http_links_and_unresolvable_relative_links_warn() {
    let (c, w) = convert_md("[a](http://x.org/s) [b](schedule.html) [c](/blog/x) [d]({{unsubscribe_url}})\n");
    assert_eq!(
        kinds(&w),
        vec![(Kind::InsecureLink, Some(1)), (Kind::UnresolvedLink, Some(1))]
    );
    assert!(html(&c).contains("href=\"https://openinfra.dev/blog/x\""));
    assert!(html(&c).contains("href=\"{{unsubscribe_url}}\""));
}

#[test]
fn scripts_styles_and_event_handlers_are_removed() {
    let md = "<script>alert(1)</script>\n\nHi <b onclick=\"steal()\" class=\"x\">there</b> <a href=\"javascript:evil()\">x</a>\n\n<style>\np { color: red }\n</style>\n\nafter\n";
    let (c, w) = convert_md(md);
    let h = html(&c);
    assert!(
        !h.contains("alert") && !h.contains("steal") && !h.contains("javascript") && !h.contains("color: red"),
        "{h}"
    );
    assert!(h.contains("<b class=\"x\">there</b>"), "{h}");
    assert!(h.contains("after"), "{h}");
    assert!(
        w.iter().all(|w| w.kind == Kind::UnsafeHtmlDropped) && w.len() == 4,
        "{w:?}"
    );
}

#[test]
fn comments_are_notes_not_content() {
    let (c, w) = convert_md("<!-- remember the\nhero image -->\n\nText <!-- inline --> here\n");
    assert!(w.is_empty());
    assert_eq!(html(&c), "<p>Text  here</p>");
}

#[test]
fn text_is_escaped_and_placeholders_survive() {
    let (c, _) = convert_md("Hi {{first_name}}, <3 & \"quotes\"\n");
    assert_eq!(html(&c), "<p>Hi {{first_name}}, &lt;3 &amp; \"quotes\"</p>");
    // The paragraph is wrapped once the reader's value is in (personalize's `wrap` helper).
    assert_eq!(c.text, "{{#wrap \"\" \"\"}}Hi {{first_name}}, <3 & \"quotes\"{{/wrap}}");
}

#[test]
fn wrap_keeps_long_words_whole() {
    let url = format!("https://example.org/{}", "a".repeat(80));
    assert_eq!(
        wrap(&format!("see {url} now"), 20, "* ", "  "),
        format!("* see\n  {url}\n  now\n")
    );
}
