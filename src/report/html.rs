//! The report as one self-contained page (`--html FILE`): inline SVG and CSS, no script, no
//! request to anything; printable, readable in dark mode, each chart with a text alternative
//! (its title and description, and the figures as a table).

use std::fmt::Write;

use super::IssueReport;
use super::year::YearReport;
use crate::html::escape;
use crate::human::thousands;

const STYLE: &str = "
:root { --fg: #1b1b1b; --muted: #4a4a4a; --bg: #ffffff; --bar: #2a62c9; --line: #b3261e; --grid: #d0d0d0; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #ececec; --muted: #c4c4c4; --bg: #151515; --bar: #7eaaf7; --line: #ff8a80; --grid: #444444; }
}
body { font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 2rem auto; max-width: 52rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; }
p.sub { color: var(--muted); margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { text-align: left; padding: 0.2rem 0.8rem 0.2rem 0; border-bottom: 1px solid var(--grid); }
td.n, th.n { text-align: right; }
svg { display: block; max-width: 100%; height: auto; }
svg text { fill: var(--fg); font: 13px system-ui, sans-serif; }
svg .bar { fill: var(--bar); }
svg .line { fill: none; stroke: var(--line); stroke-width: 2; }
svg .dot { fill: var(--line); }
svg .grid { stroke: var(--grid); stroke-width: 1; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } figure { break-inside: avoid; } }
figure { margin: 1rem 0; }
figcaption { color: var(--muted); font-size: 0.9rem; }
";

/// A chart's figures in words, for its description.
fn described(items: &[(String, u64)], unit: &str) -> String {
    items
        .iter()
        .map(|(l, v)| format!("{l}: {} {unit}", thousands(*v)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Charts in one page get ids of their own.
#[derive(Default)]
struct Page {
    body: String,
    charts: usize,
}

impl Page {
    fn heading(&mut self, text: &str) {
        let _ = write!(self.body, "<h2>{}</h2>", escape(text));
    }

    fn figures(&mut self, rows: &[(&str, String)]) {
        self.body.push_str("<table><tbody>");
        for (label, value) in rows {
            let _ = write!(
                self.body,
                "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td></tr>",
                escape(label),
                escape(value)
            );
        }
        self.body.push_str("</tbody></table>");
    }

    /// The figures of a chart as a table, its text alternative for every reader.
    fn data_table(&mut self, caption: &str, head: (&str, &str), items: &[(String, u64)]) {
        let _ = write!(
            self.body,
            "<table><caption class=\"sr\">{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\" class=\"n\">{}</th></tr></thead><tbody>",
            escape(caption),
            escape(head.0),
            escape(head.1)
        );
        for (label, value) in items {
            let _ = write!(
                self.body,
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                escape(label),
                thousands(*value)
            );
        }
        self.body.push_str("</tbody></table>");
    }

    fn open_svg(&mut self, title: &str, desc: &str, width: usize, height: usize) {
        self.charts += 1;
        let id = self.charts;
        let _ = write!(
            self.body,
            "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" aria-labelledby=\"chart{id}-title chart{id}-desc\"><title id=\"chart{id}-title\">{}</title><desc id=\"chart{id}-desc\">{}</desc>",
            escape(title),
            escape(desc)
        );
    }

    /// Horizontal bars, one per item, labelled with its value.
    fn bars(&mut self, title: &str, what: &str, unit: &str, items: &[(String, u64)]) {
        if items.is_empty() {
            return;
        }
        let label_width = 190;
        let (width, row) = (760, 26);
        let height = items.len() * row + 10;
        let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
        self.open_svg(title, &described(items, unit), width, height);
        for (i, (label, value)) in items.iter().enumerate() {
            let y = i * row + 5;
            let w = (*value as f64 / max as f64 * (width - label_width - 80) as f64).round() as usize;
            let short: String = label.chars().take(26).collect();
            let _ = write!(
                self.body,
                "<text x=\"0\" y=\"{}\">{}</text><rect class=\"bar\" x=\"{label_width}\" y=\"{y}\" width=\"{w}\" height=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
                y + 16,
                escape(&short),
                row - 8,
                label_width + w + 6,
                y + 16,
                thousands(*value)
            );
        }
        self.close_svg(title, what, unit, items);
    }

    /// A line through the points, in order, with the first and last labels on the axis.
    fn line(&mut self, title: &str, what: &str, unit: &str, points: &[(String, u64)]) {
        if points.is_empty() {
            return;
        }
        let (width, height, pad) = (760usize, 220usize, 40usize);
        let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
        let x = |i: usize| {
            if points.len() == 1 {
                (width / 2) as f64
            } else {
                pad as f64 + i as f64 * (width - 2 * pad) as f64 / (points.len() - 1) as f64
            }
        };
        let y = |v: u64| (height - pad) as f64 - v as f64 / max as f64 * (height - 2 * pad) as f64;
        self.open_svg(title, &described(points, unit), width, height);
        let _ = write!(
            self.body,
            "<line class=\"grid\" x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\"/><text x=\"0\" y=\"{2}\">{3}</text><text x=\"0\" y=\"{4}\">0</text>",
            height - pad,
            width - pad,
            pad - 6,
            thousands(max),
            height - pad + 4
        );
        let path: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, (_, v))| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(self.body, "<polyline class=\"line\" points=\"{}\"/>", path.join(" "));
        for (i, (_, v)) in points.iter().enumerate() {
            let _ = write!(
                self.body,
                "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"/>",
                x(i),
                y(*v)
            );
        }
        let last = points.len() - 1;
        let _ = write!(
            self.body,
            "<text x=\"{pad}\" y=\"{0}\">{1}</text><text x=\"{2}\" y=\"{0}\" text-anchor=\"end\">{3}</text>",
            height - 10,
            escape(&points[0].0),
            width - pad,
            escape(&points[last].0)
        );
        self.close_svg(title, what, unit, points);
    }

    /// The chart's end, its caption, and its figures as a table: its text alternative.
    fn close_svg(&mut self, title: &str, what: &str, unit: &str, items: &[(String, u64)]) {
        let _ = write!(self.body, "</svg><figcaption>{}</figcaption></figure>", escape(title));
        self.data_table(title, (what, unit), items);
    }

    fn finish(self, title: &str, subtitle: &str) -> String {
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"color-scheme\" content=\"light dark\"><title>{0}</title><style>{STYLE} .sr {{ position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }}</style></head><body><main><h1>{0}</h1><p class=\"sub\">{1}</p>{2}</main></body></html>\n",
            escape(title),
            escape(subtitle),
            self.body
        )
    }
}

pub fn issue(r: &IssueReport) -> String {
    let mut page = Page::default();
    let mut figures = vec![
        ("Delivered", thousands(r.delivered)),
        (
            "Reads",
            format!(
                "{} ({})",
                thousands(r.reads.total),
                r.reads.sources.join(", ").replace('_', " ")
            ),
        ),
        ("Clicks", thousands(r.clicks.counted)),
        ("Unsubscribed", thousands(r.unsubscribes)),
        ("New readers until the next issue", thousands(r.new_subscribers)),
    ];
    for (reason, n) in &r.clicks.machine {
        figures.push((
            "Taken out as machines'",
            format!("{} {}", thousands(*n), reason.replace('_', " ")),
        ));
    }
    if let Some(p) = &r.previous {
        figures.push((
            "Previous issue",
            format!(
                "{}: {} delivered, {} reads, {} clicks",
                p.issue,
                thousands(p.delivered),
                thousands(p.reads),
                thousands(p.clicks)
            ),
        ));
    }
    page.figures(&figures);
    page.heading("Clicks by section");
    page.bars("Clicks by section", "Section", "clicks", &r.clicks.sections());
    page.heading("Clicks and reads by day since sending");
    let days: Vec<(String, u64)> = r
        .clicks
        .by_day
        .iter()
        .map(|d| (d.day.clone(), d.clicks + d.archive_views))
        .collect();
    page.line(
        "Clicks and archive views by day",
        "Day (UTC)",
        "clicks and views",
        &days,
    );
    page.heading("Delivery outcome");
    let outcome = vec![
        ("Delivered".to_owned(), r.delivered),
        ("Hard bounces".to_owned(), r.bounces.hard),
        ("Soft bounces".to_owned(), r.bounces.soft),
        ("Complaints".to_owned(), r.complaints),
        ("Unsubscribed".to_owned(), r.unsubscribes),
    ];
    page.bars("Delivery outcome", "Outcome", "messages", &outcome);
    page.heading("Top links");
    let links: Vec<(String, u64)> = r
        .clicks
        .by_link
        .iter()
        .filter(|l| l.clicks > 0)
        .take(10)
        .map(|l| (l.url.clone(), l.clicks))
        .collect();
    page.data_table("Top links", ("Link", "clicks"), &links);
    page.finish(
        &format!("{}: {}", r.issue, r.subject),
        "How the issue did: counts only, no reader named",
    )
}

pub fn year(r: &YearReport) -> String {
    let mut page = Page::default();
    let optional = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), thousands);
    page.figures(&[
        ("Issues sent", thousands(r.issues_sent)),
        ("Messages delivered", thousands(r.delivered)),
        ("Reads", thousands(r.reads)),
        ("Clicks", thousands(r.clicks)),
        ("Subscribers at the first send", optional(r.subscribers_start)),
        ("Subscribers at the last send", optional(r.subscribers_end)),
        ("New subscribers", thousands(r.new_subscribers)),
        ("Unsubscribes", thousands(r.unsubscribes)),
        ("Bounces", thousands(r.bounces)),
        ("Complaints", thousands(r.complaints)),
    ]);
    page.heading("The list's size at each send");
    let sizes: Vec<(String, u64)> = r.issues.iter().map(|i| (i.issue.clone(), i.audience)).collect();
    page.line("Readers each issue was sent to", "Issue", "readers", &sizes);
    page.heading("Clicks per project");
    let projects: Vec<(String, u64)> = r
        .clicks_by_project
        .iter()
        .map(|p| (p.project.clone(), p.clicks))
        .collect();
    page.bars(
        "Clicks per project across the period's issues",
        "Project",
        "clicks",
        &projects,
    );
    page.heading("Clicks and reads per issue");
    let clicks: Vec<(String, u64)> = r.issues.iter().map(|i| (i.issue.clone(), i.clicks)).collect();
    page.bars("Clicks per issue", "Issue", "clicks", &clicks);
    let reads: Vec<(String, u64)> = r.issues.iter().map(|i| (i.issue.clone(), i.reads)).collect();
    page.bars("Reads per issue", "Issue", "reads", &reads);
    page.finish(
        &format!(
            "Newsletter report {} to {}",
            r.period.since,
            r.period.until.pred_opt().unwrap_or(r.period.until)
        ),
        "Counts only, no reader named",
    )
}
