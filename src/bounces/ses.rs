//! Amazon SES's notifications (Bounce, Complaint, Delivery), as its SNS topics mail them: JSON
//! in the body instead of a report.

use super::classify::{Class, Evidence, Reason, reason};
use super::fields;
use super::finding::{Finding, one_line};

/// The findings of a notification in `prose`, if it is one.
pub fn notification(prose: &str) -> Option<Vec<Finding>> {
    // Gateways wrap long lines, even inside the JSON's strings: joined, it reads again.
    let value = json(prose).or_else(|| json(&prose.replace(['\r', '\n'], "")))?;
    let finding = |recipient: &serde_json::Value, reason, status: Option<String>, diagnostic: String| Finding {
        recipient: recipient.as_str().and_then(fields::clean_address),
        original_recipient: None,
        reason,
        status,
        diagnostic,
    };
    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    // Notifications of an identity say `notificationType`; a configuration set's event
    // destinations say `eventType`, with the same fields.
    let kind = value["notificationType"]
        .as_str()
        .or_else(|| value["eventType"].as_str())?;
    Some(match kind {
        "Bounce" => {
            let permanent = value["bounce"]["bounceType"] == "Permanent";
            list(&value["bounce"]["bouncedRecipients"])
                .iter()
                .map(|r| {
                    let status = r["status"].as_str().map(str::to_owned);
                    let diagnostic = r["diagnosticCode"].as_str().unwrap_or_default().to_owned();
                    let said = reason(Evidence {
                        status: status.as_deref(),
                        diagnostic: &diagnostic,
                        ..Evidence::default()
                    });
                    // SES has already decided permanence: its Permanent bounces are to be
                    // removed, its Transient ones (it gave up on a full mailbox) are not.
                    // A Permanent bounce whose words say nothing more is SES's judgement; words
                    // of a full mailbox, a block, a fault of DNS or a program stay soft.
                    let reason = match (permanent, said.class()) {
                        (true, _) if said == Reason::Other => Reason::UserUnknown,
                        (false, Class::Hard) => Reason::Other,
                        _ => said,
                    };
                    finding(&r["emailAddress"], reason, status, one_line(&diagnostic))
                })
                .collect()
        }
        "Complaint" => list(&value["complaint"]["complainedRecipients"])
            .iter()
            .map(|r| finding(&r["emailAddress"], Reason::Complaint, None, "complaint".into()))
            .collect(),
        "Delivery" => list(&value["delivery"]["recipients"])
            .iter()
            .map(|r| finding(r, Reason::Delivered, None, String::new()))
            .collect(),
        _ => return None,
    })
}

/// The notification's JSON object in `text`, if it holds one.
fn json(text: &str) -> Option<serde_json::Value> {
    if !text.contains("\"notificationType\"") && !text.contains("\"eventType\"") {
        return None;
    }
    serde_json::from_str(&text[text.find('{')?..=text.rfind('}')?]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounces_and_complaints() {
        let bounce = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"Gone@Example.org","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"},{"emailAddress":"x@example.org","diagnosticCode":"smtp; 554 5.7.1 blocked using Spamhaus"}]}}"#;
        let f = notification(bounce).unwrap();
        assert_eq!(f[0].recipient.as_deref(), Some("gone@example.org"));
        assert_eq!(f[0].reason, Reason::UserUnknown);
        // Permanent for SES, but a block of our sending removes no one.
        assert_eq!(f[1].reason, Reason::Blocked);
        let transient = bounce.replace("Permanent", "Transient");
        assert_eq!(notification(&transient).unwrap()[0].reason.class(), Class::Soft);
        let complaint = r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"r@example.org"}]}}"#;
        assert_eq!(notification(complaint).unwrap()[0].reason, Reason::Complaint);
        assert!(notification("no json here").is_none());
        // A configuration set's event destination says eventType, with the same fields; a
        // transient bounce there stays soft as well.
        let event = r#"{"eventType":"Bounce","bounce":{"bounceType":"Transient","bouncedRecipients":[{"emailAddress":"full@example.net","status":"4.2.2","diagnosticCode":"smtp; 452 4.2.2 mailbox full"}]},"mail":{"messageId":"0100"}}"#;
        let f = notification(event).unwrap();
        assert_eq!(f[0].recipient.as_deref(), Some("full@example.net"));
        assert_eq!(f[0].reason.class(), Class::Soft);
        assert!(
            notification(r#"{"eventType":"Send","mail":{}}"#).is_none(),
            "not a return"
        );
    }

    #[test]
    fn a_notification_wrapped_by_a_gateway_still_reads() {
        let complaint = r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"reader@example.org"}],"complaintFeedbackType":"abuse"},"mail":{"source":"newsletter@openinfra.dev"}}"#;
        // Cut every 40 characters, inside keys and strings too, as a 40-column wrap would.
        let wrapped: String = complaint
            .as_bytes()
            .chunks(40)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n");
        let f = notification(&wrapped).unwrap();
        assert_eq!(f[0].recipient.as_deref(), Some("reader@example.org"));
        assert_eq!(f[0].reason, Reason::Complaint);
        // Permanent, but a fault of DNS stays soft.
        let dns = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"r@example.org","status":"5.4.4","diagnosticCode":"smtp; 554 5.4.4 SERVFAIL from the name server"}]}}"#;
        assert_eq!(notification(dns).unwrap()[0].reason.class(), Class::Soft);
    }
}
