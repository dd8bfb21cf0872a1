//! DMARC aggregate reports as receivers write them, for the tests: the XML of both schemas,
//! gzip and zip, and the emails that carry them (base64 and quoted-printable attachments,
//! inline XML), with the records a test chooses.

use std::io::Write;

use base64::Engine;
use serde_json::Value;

use super::{Project, run};

pub(crate) const DAY: i64 = 86_400;

/// The start of the UTC day `n` days ago.
pub(crate) fn day(n: i64) -> i64 {
    (chrono::Utc::now().timestamp() / DAY - n) * DAY
}

#[derive(Clone)]
pub(crate) struct Rec {
    pub(crate) ip: &'static str,
    pub(crate) count: u64,
    pub(crate) disposition: &'static str,
    pub(crate) dkim: &'static str,
    pub(crate) spf: &'static str,
    /// The reported signature: domain, selector, result.
    pub(crate) sig: Option<(&'static str, &'static str, &'static str)>,
    pub(crate) spf_domain: &'static str,
}

/// Ours as the test configures it: from 192.0.2.0/28, signed d=openinfra.dev s=s1.
pub(crate) fn ours(ip: &'static str, count: u64) -> Rec {
    Rec {
        ip,
        count,
        disposition: "none",
        dkim: "pass",
        spf: "pass",
        sig: Some(("openinfra.dev", "s1", "pass")),
        spf_domain: "openinfra.dev",
    }
}

pub(crate) fn stranger(ip: &'static str, count: u64) -> Rec {
    Rec {
        ip,
        count,
        disposition: "none",
        dkim: "fail",
        spf: "fail",
        sig: None,
        spf_domain: "elsewhere.example",
    }
}

pub(crate) struct Report {
    pub(crate) org: &'static str,
    pub(crate) id: String,
    pub(crate) begin: i64,
    pub(crate) policy: &'static str,
    pub(crate) records: Vec<Rec>,
}

pub(crate) fn report(org: &'static str, id: &str, days_ago: i64, records: Vec<Rec>) -> Report {
    Report {
        org,
        id: id.to_owned(),
        begin: day(days_ago),
        policy: "quarantine",
        records,
    }
}

impl Report {
    /// The XML, DMARC 1 or (with `bis`) DMARCbis; `header_from` as the records give it.
    pub(crate) fn xml_with(&self, bis: bool, header_from: &str) -> String {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x += if bis {
            "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">\n  <version>1.0</version>\n"
        } else {
            "<feedback>\n"
        };
        x += &format!(
            "  <report_metadata>\n    <org_name>{}</org_name>\n    <email>noreply-dmarc@{}</email>\n    <report_id>{}</report_id>\n    <date_range><begin>{}</begin><end>{}</end></date_range>\n  </report_metadata>\n",
            self.org,
            self.org,
            self.id,
            self.begin,
            self.begin + DAY - 1
        );
        x += &format!(
            "  <policy_published>\n    <domain>openinfra.dev</domain>\n    <adkim>r</adkim>\n    <aspf>r</aspf>\n    <p>{}</p>\n{}  </policy_published>\n",
            self.policy,
            if bis {
                "    <discovery_method>treewalk</discovery_method>\n    <testing>n</testing>\n"
            } else {
                "    <sp>none</sp>\n    <pct>100</pct>\n"
            }
        );
        for r in &self.records {
            let sig = r.sig.map_or(String::new(), |(d, s, res)| {
                format!("      <dkim><domain>{d}</domain><selector>{s}</selector><result>{res}</result></dkim>\n")
            });
            x += &format!(
                "  <record>\n    <row>\n      <source_ip>{}</source_ip>\n      <count>{}</count>\n      <policy_evaluated><disposition>{}</disposition><dkim>{}</dkim><spf>{}</spf></policy_evaluated>\n    </row>\n    <identifiers><header_from>{header_from}</header_from></identifiers>\n    <auth_results>\n{sig}      <spf><domain>{}</domain><result>{}</result></spf>\n    </auth_results>\n  </record>\n",
                r.ip,
                r.count,
                r.disposition,
                r.dkim,
                r.spf,
                r.spf_domain,
                if r.spf == "pass" { "pass" } else { "fail" }
            );
        }
        x + "</feedback>\n"
    }

    pub(crate) fn xml(&self) -> String {
        self.xml_with(false, "openinfra.dev")
    }

    /// What any reader must count: messages, DKIM and SPF aligned, rows, sources.
    pub(crate) fn totals(&self) -> (u64, u64, u64, u64, u64) {
        let sum = |f: &dyn Fn(&Rec) -> bool| self.records.iter().filter(|r| f(r)).map(|r| r.count).sum::<u64>();
        let mut ips: Vec<&str> = self.records.iter().map(|r| r.ip).collect();
        ips.sort();
        ips.dedup();
        (
            sum(&|_| true),
            sum(&|r| r.dkim == "pass"),
            sum(&|r| r.spf == "pass"),
            self.records.len() as u64,
            ips.len() as u64,
        )
    }
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

pub(crate) fn zip(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(name, options).unwrap();
    zip.write_all(bytes).unwrap();
    zip.finish().unwrap().into_inner()
}

/// A report email as Google's and Microsoft's are built: a short text part and the report as
/// an attachment of `content_type`, in base64.
pub(crate) fn email(r: &Report, content_type: &str, filename: &str, attachment: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(attachment);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "From: noreply-dmarc@{org}\r\nTo: dmarc@openinfra.dev\r\nSubject: Report Domain: openinfra.dev Submitter: {org} Report-ID: <{id}>\r\nDate: Mon, 1 Dec 2025 00:00:00 +0000\r\nMessage-ID: <{id}@{org}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is an aggregate report from {org}.\r\n\r\n--b1\r\nContent-Type: {content_type}; name=\"{filename}\"\r\nContent-Disposition: attachment; filename=\"{filename}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        lines.join("\r\n"),
        org = r.org,
        id = r.id,
    )
}

/// A report email whose XML is in a part of `content_type` in quoted-printable (inline when
/// `attached` is false).
pub(crate) fn email_qp(r: &Report, content_type: &str, attached: bool) -> String {
    let qp = quoted_printable::encode_to_str(r.xml().replace('\n', "\r\n"));
    let disposition = if attached {
        "Content-Disposition: attachment; filename=\"report.xml\"\r\n"
    } else {
        ""
    };
    format!(
        "From: dmarc@{org}\r\nTo: dmarc@openinfra.dev\r\nSubject: Report Domain: openinfra.dev Submitter: {org} Report-ID: {id}\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}; charset=utf-8\r\n{disposition}Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp}\r\n",
        org = r.org,
        id = r.id,
    )
}

/// The project: our sources 192.0.2.0/28, DKIM selector s1 (no key: nothing is sent here).
pub(crate) fn project(extra: &str) -> Project {
    Project::new(
        2525,
        &super::csv(1),
        &format!("dkim: {{ selector: s1 }}\ndmarc: {{ our_sources: [192.0.2.0/28] {extra}}}\n"),
    )
}

pub(crate) fn dmarc_json(project: &Project, args: &[&str]) -> Value {
    let r = run(project.command().arg("dmarc").args(args).args(["--format", "json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}
