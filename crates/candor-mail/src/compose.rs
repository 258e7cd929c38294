//! Composing a message: RFC 5322 bytes with CRLF line endings, `multipart/alternative`
//! when there is an HTML part, encoded headers and folded lines — all lettre's
//! builder, which is what it is for. Candor adds a deterministic `Message-ID` (every
//! attempt at one message carries the same one) and its own headers
//! (`List-Unsubscribe`, `List-Unsubscribe-Post`), refused if they could inject a line.

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
        if !name_ok || !no_breaks(value) || value.len() > 2000 {
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
        let mut d = draft();
        d.html = None;
        let plain = String::from_utf8(compose(&d, SystemTime::UNIX_EPOCH).unwrap()).unwrap();
        assert!(!plain.contains("multipart"));
    }
}
