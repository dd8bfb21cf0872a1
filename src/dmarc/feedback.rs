//! One aggregate report's XML read into what the ledger keeps, under both schemas: DMARC 1
//! (RFC 7489 appendix C) and DMARCbis (`urn:ietf:params:xml:ns:dmarc-2.0`), which name the
//! same elements (the reader drops namespace prefixes).

use super::unpack::Unreadable;
use super::xml::{self, Element};
use crate::ledger::dmarc::{Feedback, Row};

/// A report read: its head, its rows, and how many rows could not be read (no source or no
/// count).
pub struct Report {
    pub feedback: Feedback,
    pub rows: Vec<Row>,
    pub skipped: u64,
}

/// Reads one document; `file` names where it came from.
pub fn read(document: &[u8], file: &str) -> Result<Report, Unreadable> {
    let mut rows = Vec::new();
    let mut skipped = 0;
    let root = xml::read(document, &mut |record| match row_of(&record) {
        Some(row) => rows.push(row),
        None => skipped += 1,
    });
    let meta = root
        .find("report_metadata")
        .ok_or(Unreadable::NotAReport("it has no report_metadata"))?;
    let org = clean(meta.value(&["org_name"]));
    let report_id = clean(meta.value(&["report_id"]));
    if org.is_empty() || report_id.is_empty() {
        return Err(Unreadable::NotAReport(
            "its report_metadata names no org_name or report_id",
        ));
    }
    let seconds = |name: &str| -> Option<i64> {
        let v = meta.value(&["date_range", name]);
        // Some reporters write a fraction.
        v.parse::<i64>()
            .ok()
            .or_else(|| v.parse::<f64>().ok().map(|f| f as i64))
    };
    let (Some(begin), Some(end)) = (seconds("begin"), seconds("end")) else {
        return Err(Unreadable::NotAReport("its date_range has no readable begin and end"));
    };
    let policy = root.find("policy_published");
    let domain = policy.map(|p| p.value(&["domain"])).unwrap_or_default();
    let domain = if domain.is_empty() {
        // Read from the rows when the policy left it out.
        rows.first().map(|r: &Row| r.header_from.clone()).unwrap_or_default()
    } else {
        clean(domain).to_ascii_lowercase()
    };
    if domain.is_empty() {
        return Err(Unreadable::NotAReport("it names no domain (policy_published/domain)"));
    }
    Ok(Report {
        feedback: Feedback {
            org,
            report_id,
            domain,
            policy: policy.map(|p| p.value(&["p"]).to_ascii_lowercase()).unwrap_or_default(),
            begin,
            end,
            file: file.to_owned(),
        },
        rows,
        skipped,
    })
}

fn row_of(record: &Element) -> Option<Row> {
    let row = record.child("row")?;
    let source_ip = row.value(&["source_ip"]);
    let ip = source_ip.parse::<std::net::IpAddr>().ok()?;
    let messages = row.value(&["count"]).parse::<u64>().ok()?;
    let lower =
        |e: Option<&Element>, path: &[&str]| e.map(|e| clean(e.value(path)).to_ascii_lowercase()).unwrap_or_default();
    let evaluated = row.child("policy_evaluated");
    let header_from = lower(record.child("identifiers"), &["header_from"]);
    let auth = record.child("auth_results");
    let dkim = auth.and_then(|a| deciding_dkim(a, &header_from));
    let spf = auth.and_then(|a| a.child("spf"));
    Some(Row {
        source_ip: ip.to_string(),
        messages,
        disposition: lower(evaluated, &["disposition"]),
        dkim: lower(evaluated, &["dkim"]),
        spf: lower(evaluated, &["spf"]),
        header_from,
        dkim_domain: lower(dkim, &["domain"]),
        dkim_selector: lower(dkim, &["selector"]),
        dkim_result: lower(dkim, &["result"]),
        spf_domain: lower(spf, &["domain"]),
        spf_result: lower(spf, &["result"]),
    })
}

/// Of the DKIM results (one per signature), the one DMARC looked at: a signature of the
/// header_from domain (or its parent or child, as relaxed alignment allows), a pass first; else
/// the first reported.
fn deciding_dkim<'a>(auth: &'a Element, header_from: &str) -> Option<&'a Element> {
    let aligned = |e: &&Element| aligned(&e.value(&["domain"]).to_ascii_lowercase(), header_from);
    let passed = |e: &&Element| e.value(&["result"]).eq_ignore_ascii_case("pass");
    auth.all("dkim")
        .filter(aligned)
        .find(passed)
        .or_else(|| auth.all("dkim").find(aligned))
        .or_else(|| auth.child("dkim"))
}

/// A value from a report as it may be kept and printed: reports come from anyone who can mail
/// the rua= address, so control characters (a terminal's escape sequences, new lines that
/// would forge output lines) are dropped and the length is capped.
fn clean(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(255).collect()
}

/// Relaxed alignment, approximated without the public suffix list: the same domain, or one
/// under the other.
pub fn aligned(a: &str, b: &str) -> bool {
    !a.is_empty() && !b.is_empty() && (a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_keeps_the_signature_that_decides() {
        let xml = "<feedback><report_metadata><org_name>google.com</org_name><report_id>7</report_id>\
            <date_range><begin>1700000000</begin><end>1700086399.5</end></date_range></report_metadata>\
            <policy_published><domain>OpenInfra.dev</domain><p>none</p></policy_published>\
            <record><row><source_ip>2001:db8::1</source_ip><count>5</count><policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>\
            <identifiers><header_from>openinfra.dev</header_from></identifiers><auth_results>\
            <dkim><domain>amazonses.com</domain><selector>ug7</selector><result>pass</result></dkim>\
            <dkim><domain>openinfra.dev</domain><selector>s1</selector><result>pass</result></dkim>\
            <spf><domain>amazonses.com</domain><result>pass</result></spf></auth_results></record>\
            <record><row><source_ip>not an address</source_ip><count>1</count></row></record></feedback>";
        let report = read(xml.as_bytes(), "f.xml").unwrap();
        assert_eq!(report.feedback.domain, "openinfra.dev");
        assert_eq!(report.feedback.end, 1700086399);
        assert_eq!(report.skipped, 1);
        let row = &report.rows[0];
        assert_eq!(
            (row.dkim_domain.as_str(), row.dkim_selector.as_str()),
            ("openinfra.dev", "s1")
        );
        assert_eq!(row.spf_domain, "amazonses.com");
        assert_eq!(row.source_ip, "2001:db8::1");
    }

    #[test]
    fn values_lose_control_characters_and_their_excess() {
        let xml = format!(
            "<feedback><report_metadata><org_name>evil\u{1b}[2J\ncorp</org_name><report_id>{}</report_id>\
             <date_range><begin>1</begin><end>2</end></date_range></report_metadata>\
             <policy_published><domain>openinfra.dev</domain><p>none</p></policy_published>\
             <record><row><source_ip>192.0.2.1</source_ip><count>1</count></row>\
             <identifiers><header_from>openinfra.dev\r\nwarning: forged</header_from></identifiers></record></feedback>",
            "x".repeat(1000)
        );
        let report = read(xml.as_bytes(), "f").unwrap();
        assert_eq!(report.feedback.org, "evil[2Jcorp");
        assert_eq!(report.feedback.report_id.len(), 255);
        assert_eq!(report.rows[0].header_from, "openinfra.devwarning: forged");
    }

    #[test]
    fn what_is_not_a_report_says_why() {
        assert!(matches!(read(b"<feedback/>", "f"), Err(Unreadable::NotAReport(_))));
        let no_dates =
            "<feedback><report_metadata><org_name>a</org_name><report_id>1</report_id></report_metadata></feedback>";
        assert_eq!(
            read(no_dates.as_bytes(), "f").err(),
            Some(Unreadable::NotAReport("its date_range has no readable begin and end"))
        );
    }
}
