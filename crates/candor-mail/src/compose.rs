//! Composing a message: RFC 5322 bytes with CRLF line endings, `multipart/alternative`
//! when there is an HTML part, encoded headers and folded lines — all lettre's
//! builder, which is what it is for. Candor adds a deterministic `Message-ID` (every
//! attempt at one message carries the same one) and its own headers
//! (`List-Unsubscribe`, `List-Unsubscribe-Post` per RFC 8058, `X-Candor-Campaign`),
//! refused if they could inject a line or replace one the builder writes (a second
//! `To` or `Bcc` would change who gets the message).

use crate::EmailAddress;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Address;
use std::time::SystemTime;

/// One message to compose.
#[derive(Clone, Debug)]
pub struct Draft {
    pub from: EmailAddress,
    pub from_name: Option<String>,
    pub to: EmailAddress,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Without the angle brackets: `c12.ab34@example.com`.
    pub message_id: String,
    /// Extra headers, in order.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("header {0:?}: names are letters, digits and '-'; values have no line breaks")]
    Header(String),
    #[error("the Message-ID must be local@domain without brackets, spaces or line breaks")]
    MessageId,
    #[error("the subject has a line break")]
    Subject,
    #[error("{0}")]
    Address(String),
    #[error("{0}")]
    Build(String),
}

fn mailbox(name: Option<String>, a: &EmailAddress) -> Result<Mailbox, ComposeError> {
    let addr = Address::new(a.local(), a.domain())
        .map_err(|e| ComposeError::Address(format!("address: {e}")))?;
    Ok(Mailbox::new(name, addr))
}

const RESERVED: &[&str] = &[
    "From",
    "Sender",
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Return-Path",
];

fn no_breaks(s: &str) -> bool {
    !s.contains(['\r', '\n', '\0'])
}

/// The message's bytes, dated `date`.
pub fn compose(d: &Draft, date: SystemTime) -> Result<Vec<u8>, ComposeError> {
    if !no_breaks(&d.subject) {
        return Err(ComposeError::Subject);
    }
    let id_ok = d.message_id.len() <= 250
        && d.message_id.matches('@').count() == 1
        && d.message_id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '\\' | ',' | ';'));
    if !id_ok {
        return Err(ComposeError::MessageId);
    }
    let mut b = lettre::Message::builder()
        .from(mailbox(
            d.from_name.clone().filter(|n| no_breaks(n)),
            &d.from,
        )?)
        .to(mailbox(None, &d.to)?)
        .subject(d.subject.clone())
        .date(date)
        .message_id(Some(format!("<{}>", d.message_id)));
    for (name, value) in &d.headers {
        let name_ok = !name.is_empty()
            && name.len() <= 76
            && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
        // The headers the builder writes itself: a second From, To, Bcc or
        // Content-Type from a caller would change who gets the message or how it reads.
        let reserved = RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name));
        if !name_ok || reserved || !no_breaks(value) || value.len() > 2000 {
            return Err(ComposeError::Header(name.chars().take(40).collect()));
        }
        let hn = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| ComposeError::Header(name.clone()))?;
        b = b.raw_header(HeaderValue::new(hn, value.clone()));
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(d.text.clone());
    let msg = match &d.html {
        Some(h) => b.multipart(
            MultiPart::alternative().singlepart(text).singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(h.clone()),
            ),
        ),
        None => b.singlepart(text),
    }
    .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(msg.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            from: EmailAddress::parse("news@example.com").unwrap(),
            from_name: Some("Example News".into()),
            to: EmailAddress::parse("ann@example.org").unwrap(),
            subject: "Grüße, Ann".into(),
            text: "Hello\n.\nBye".into(),
            html: Some("<p>Hello</p>".into()),
            message_id: "c1.abc@example.com".into(),
            headers: vec![
                (
                    "List-Unsubscribe".into(),
                    "<https://candor.example.com/email/unsubscribe?t=abc.def>".into(),
                ),
                (
                    "List-Unsubscribe-Post".into(),
                    "List-Unsubscribe=One-Click".into(),
                ),
            ],
        }
    }

    fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
        msg.split("\r\n\r\n")
            .next()
            .unwrap()
            .split("\r\n")
            .filter(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .collect()
    }

    #[test]
    fn headers_parts_and_line_endings() {
        let bytes = compose(&draft(), SystemTime::UNIX_EPOCH).unwrap();
        let msg = String::from_utf8(bytes).unwrap();
        assert!(!msg.replace("\r\n", "").contains('\n'), "bare LF");
        assert_eq!(
            header(&msg, "Message-ID"),
            ["Message-ID: <c1.abc@example.com>"]
        );
        assert_eq!(
            header(&msg, "List-Unsubscribe-Post"),
            ["List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
        );
        assert_eq!(header(&msg, "List-Unsubscribe").len(), 1);
        assert!(msg.contains("https://candor.example.com/email/unsubscribe?t=abc.def"));
        let subject = header(&msg, "Subject")[0];
        assert!(
            subject.is_ascii() && subject.contains("=?utf-8?"),
            "{subject}"
        );
        assert!(msg.contains("multipart/alternative"));
        assert!(msg.contains("text/plain") && msg.contains("text/html"));
    }

    #[test]
    fn injection_is_refused() {
        let mut d = draft();
        d.headers.push(("X-Evil".into(), "a\r\nBcc: x@y".into()));
        assert!(matches!(
            compose(&d, SystemTime::UNIX_EPOCH),
            Err(ComposeError::Header(_))
        ));
        let mut d = draft();
        d.headers.push(("X Evil".into(), "a".into()));
        assert!(compose(&d, SystemTime::UNIX_EPOCH).is_err());
        let mut d = draft();
        d.subject = "hi\r\nBcc: x@y".into();
        assert!(matches!(
            compose(&d, SystemTime::UNIX_EPOCH),
            Err(ComposeError::Subject)
        ));
        let mut d = draft();
        d.message_id = "<a@b>".into();
        assert!(matches!(
            compose(&d, SystemTime::UNIX_EPOCH),
            Err(ComposeError::MessageId)
        ));
        for name in ["Bcc", "from", "Content-Type", "MESSAGE-ID"] {
            let mut d = draft();
            d.headers.push((name.into(), "x@example.net".into()));
            assert!(
                matches!(
                    compose(&d, SystemTime::UNIX_EPOCH),
                    Err(ComposeError::Header(_))
                ),
                "{name}"
            );
        }
        let mut d = draft();
        d.html = None;
        let plain = String::from_utf8(compose(&d, SystemTime::UNIX_EPOCH).unwrap()).unwrap();
        assert!(!plain.contains("multipart"));
    }

    /// A header's value with folding undone (RFC 5322 2.2.3).
    fn unfolded(msg: &str, name: &str) -> String {
        let head = msg.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
        let head = head.replace("\r\n\t", "\t");
        let prefix = format!("{}: ", name.to_ascii_lowercase());
        let line = head
            .split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .unwrap();
        line[prefix.len()..].to_owned()
    }

    #[test]
    fn long_headers_are_folded_and_read_back_whole() {
        let mut d = draft();
        let unsubscribe = format!(
            "<https://candor.example.com/email/unsubscribe?t={}>, <mailto:unsubscribe@example.com?subject={}>",
            "a".repeat(120),
            "b".repeat(60)
        );
        d.headers = vec![
            ("List-Unsubscribe".into(), unsubscribe.clone()),
            ("X-Candor-Campaign".into(), "42".into()),
        ];
        d.subject = "Ünïcödé ".repeat(20).trim_end().to_owned();
        d.from_name = Some("Zoë's Bäckerei, \"the best\"".into());
        let msg = String::from_utf8(compose(&d, SystemTime::UNIX_EPOCH).unwrap()).unwrap();
        assert!(msg.is_ascii(), "headers and parts encoded");
        for line in msg.split("\r\n") {
            assert!(line.len() <= 998, "a line over RFC 5322's limit: {line}");
        }
        assert!(
            !msg.replace("\r\n", "").contains(['\r', '\n']),
            "bare CR or LF"
        );
        let head = msg.split("\r\n\r\n").next().unwrap();
        // Folded at the space between the two URIs, not cut inside one.
        assert!(head.contains(">,\r\n <mailto:"), "{head}");
        assert_eq!(unfolded(&msg, "List-Unsubscribe"), unsubscribe);
        assert_eq!(unfolded(&msg, "X-Candor-Campaign"), "42");
        assert!(unfolded(&msg, "Subject").starts_with("=?utf-8?"));
        assert_eq!(
            header(&msg, "Message-ID"),
            ["Message-ID: <c1.abc@example.com>"]
        );
    }

    #[test]
    fn the_same_draft_composes_to_the_same_message() {
        // A resend of one queued message carries the same Message-ID and, with the
        // same date, the same headers and text, so a recipient's client sees one mail.
        // Only the MIME boundary is random.
        let same = |bytes: Vec<u8>| {
            let msg = String::from_utf8(bytes).unwrap();
            let boundary = msg
                .split("boundary=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            msg.replace(boundary, "BOUNDARY")
        };
        let a = same(compose(&draft(), SystemTime::UNIX_EPOCH).unwrap());
        let b = same(compose(&draft(), SystemTime::UNIX_EPOCH).unwrap());
        assert_eq!(a, b);
    }
}
