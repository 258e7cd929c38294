//! Complaints and late bounces, the suppressions that arrive after a message was taken
//! (issue 16): a mailbox provider's feedback loop forwards a complaint as an Abuse
//! Reporting Format report (ARF, RFC 5965), and a relay reports a bounce after it
//! accepted the message. Both feed the suppression list, for every list.
//!
//! **Which person.** Feedback loops usually redact the recipient's address, so a report
//! is matched by what Candor put in the message itself: the `List-Unsubscribe` URL's
//! token, which names the subject and the list under a MAC only Candor can make
//! ([`super::tokens`]). The subject's address (still held, unless they were erased)
//! gives the suppression's keyed hash. A report without a valid token names nobody
//! and changes nothing. Nothing of a report is logged: it holds a person's mail.
//!
//! **What is read.** Only what finding the token needs, bounded: the report's
//! `Feedback-Type` (RFC 5965 §3.1; `abuse`, `fraud`, `other` and `virus` are
//! complaints, `not-spam` is not) and the first Candor unsubscribe URL in the text,
//! with header folding and quoted-printable soft breaks undone (a
//! `text/rfc822-headers` part may be quoted-printable). A base64-encoded original is
//! not decoded: such reports are refused as unrecognized.

use super::{address_of, Mail};
use crate::error::{ApiError, Code};
use crate::state::AppState;
use candor_core::crypto::LookupHash;
use candor_store::email::{SuppressReason, Suppression, EVERY_LIST};

/// What a report or a notice did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The address is suppressed for every list from now on.
    Suppressed,
    /// It already was (for every list, for this or another reason).
    AlreadySuppressed,
    /// A report that is no complaint (`not-spam`): nothing changed.
    NotAComplaint,
    /// The person the report names was erased: there is no address to suppress.
    Gone,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suppressed => "suppressed",
            Self::AlreadySuppressed => "already_suppressed",
            Self::NotAComplaint => "not_a_complaint",
            Self::Gone => "gone",
        }
    }
}

/// Suppresses `address` for every list.
pub async fn suppress(
    st: &AppState,
    address: LookupHash,
    reason: SuppressReason,
) -> Result<Outcome, ApiError> {
    let new = st
        .store
        .email()
        .suppress(Suppression {
            address,
            list: EVERY_LIST.into(),
            reason,
            created_ms: st.now_ms(),
        })
        .await?;
    Ok(if new {
        Outcome::Suppressed
    } else {
        Outcome::AlreadySuppressed
    })
}

/// A feedback-loop report: the person its message's unsubscribe token names is
/// suppressed for every list as a complaint. `unrecognized_report` when no token in
/// it is Candor's (nothing changed).
pub async fn report(st: &AppState, mail: &Mail, raw: &[u8]) -> Result<Outcome, ApiError> {
    let r = read(raw);
    if !r.is_complaint() {
        return Ok(Outcome::NotAComplaint);
    }
    let Some(u) = r
        .tokens
        .iter()
        .find_map(|t| mail.keys.check_unsubscribe(t).ok())
    else {
        return Err(ApiError::new(
            Code::UnrecognizedReport,
            "no unsubscribe link of this server's mails was found in the report",
        ));
    };
    match address_of(st, u.subject).await? {
        Some((_, id)) => suppress(st, id.hash, SuppressReason::Complaint).await,
        None => Ok(Outcome::Gone),
    }
}

/// Where the token sits in the unsubscribe URL Candor writes (`sender`).
const MARK: &str = "/email/unsubscribe?t=";
/// The longest token looked at (a list name is at most 64 bytes: the token far less).
const MAX_TOKEN: usize = 400;
/// The most candidate tokens tried for one report.
const MAX_TOKENS: usize = 4;

/// What a report says, as far as Candor reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The report's `Feedback-Type`, lowercased, when it has one.
    pub feedback_type: Option<String>,
    /// Unsubscribe tokens found in the message, not yet verified, in the order to try
    /// them: as written, then with quoted-printable's `=3D` read as `=` (the text
    /// alone cannot tell whether it was encoded; the MAC tells which is real).
    pub tokens: Vec<String>,
}

impl Report {
    /// Whether the report complains about the message (RFC 5965 §7.3 registers
    /// `abuse`, `fraud`, `other`, `virus` and `not-spam`; only the last is not one).
    /// A report without a type is a plain forward of the message as abuse.
    pub fn is_complaint(&self) -> bool {
        self.feedback_type.as_deref() != Some("not-spam")
    }
}

/// Reads a report (the whole message as it arrived: `multipart/report`, or the
/// forwarded original alone). Never fails: what is missing is `None` or empty.
pub fn read(raw: &[u8]) -> Report {
    let text = String::from_utf8_lossy(raw);
    let text = unfold(&text);
    let mut tokens = tokens_in(&text);
    for t in tokens_in(&quoted_printable_equals(&text)) {
        if !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    tokens.truncate(MAX_TOKENS);
    Report {
        feedback_type: feedback_type(&text),
        tokens,
    }
}

/// Joins folded header lines (RFC 5322 §2.2.3) and quoted-printable soft line breaks
/// (RFC 2045 §6.7 rule 5), so that a long URL split over lines reads whole.
fn unfold(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::with_capacity(s.len());
    let mut lines = s.split('\n').peekable();
    while let Some(line) = lines.next() {
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        match lines.peek() {
            Some(next) if next.starts_with([' ', '\t']) => {}
            Some(_) => out.push('\n'),
            None => {}
        }
    }
    out
}

/// The encoded `=` of quoted-printable, decoded: `t=3D...` reads `t=...`.
fn quoted_printable_equals(s: &str) -> String {
    s.replace("=3D", "=").replace("=3d", "=")
}

fn feedback_type(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("feedback-type") {
            return None;
        }
        let v = value.trim().to_ascii_lowercase();
        (!v.is_empty() && v.len() <= 32).then_some(v)
    })
}

/// The well-formed tokens after each [`MARK`] (a report may quote the URL more than
/// once, or cut one short), at most [`MAX_TOKENS`].
fn tokens_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in text.match_indices(MARK).filter_map(|(at, _)| {
        let t: String = text[at + MARK.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(MAX_TOKEN + 1)
            .collect();
        (!t.is_empty() && t.len() <= MAX_TOKEN).then_some(t)
    }) {
        if !out.contains(&t) {
            out.push(t);
        }
        if out.len() == MAX_TOKENS {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An ARF report as a feedback loop sends it (RFC 5965 Appendix B.2, with Candor's
    /// headers in the original and the recipient redacted).
    fn arf(token: &str, feedback_type: &str) -> String {
        format!(
            "From: <abusedesk@mailbox.example>\r\n\
             To: <fbl@example.com>\r\n\
             Subject: FW: Spring offers\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report;\r\n\
             \tboundary=\"part1_13d.2e68ed54_boundary\"\r\n\
             \r\n\
             --part1_13d.2e68ed54_boundary\r\n\
             Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
             \r\n\
             This is an email abuse report for an email message received from IP\r\n\
             192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n\
             --part1_13d.2e68ed54_boundary\r\n\
             Content-Type: message/feedback-report\r\n\
             \r\n\
             Feedback-Type: {feedback_type}\r\n\
             User-Agent: SomeGenerator/1.0\r\n\
             Version: 1\r\n\
             \r\n\
             --part1_13d.2e68ed54_boundary\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             From: Example News <news@example.com>\r\n\
             To: redacted@mailbox.example\r\n\
             Subject: Spring offers\r\n\
             Message-ID: <c3.0011223344@example.com>\r\n\
             List-Unsubscribe: <https://candor.example.com/email/unsubscribe?t={token}>,\r\n \
             <mailto:leave@example.com?subject=unsubscribe>\r\n\
             List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
             \r\n\
             --part1_13d.2e68ed54_boundary--\r\n"
        )
    }

    #[test]
    fn a_feedback_loop_report_names_its_type_and_token() {
        let r = read(arf("AAECAw-_x.Zm9v", "abuse").as_bytes());
        assert_eq!(r.feedback_type.as_deref(), Some("abuse"));
        assert_eq!(r.tokens, ["AAECAw-_x.Zm9v"]);
        assert!(r.is_complaint());
        assert!(!read(arf("t.t", "Not-Spam").as_bytes()).is_complaint());
    }

    #[test]
    fn folded_and_quoted_printable_urls_read_whole() {
        // A header folded inside the URL's angle brackets, and a quoted-printable part
        // that encoded '=' and broke the line softly.
        let folded = "List-Unsubscribe:\r\n <https://c.example/email/unsubscribe?t=abc.def>\r\n";
        assert_eq!(read(folded.as_bytes()).tokens, ["abc.def"]);
        let qp = "Content-Transfer-Encoding: quoted-printable\r\n\r\nList-Unsubscribe: <https://c.e=\r\nxample/email/unsubscribe?t=3Dabc.=\r\ndef>\r\n";
        assert_eq!(read(qp.as_bytes()).tokens, ["3Dabc.def", "abc.def"]);
    }

    #[test]
    fn nothing_found_is_none() {
        let r = read(b"Feedback-Type: abuse\r\n\r\nno link here");
        assert!(r.tokens.is_empty());
        assert_eq!(read(b"").feedback_type, None);
        let long = format!("/email/unsubscribe?t={}", "a".repeat(MAX_TOKEN + 1));
        assert!(read(long.as_bytes()).tokens.is_empty());
        assert!(read(b"/email/unsubscribe?t=>").tokens.is_empty());
        let many = format!("{MARK}a {MARK}b {MARK}c {MARK}d {MARK}e {MARK}a");
        assert_eq!(read(many.as_bytes()).tokens, ["a", "b", "c", "d"]);
    }

    proptest! {
        #[test]
        fn any_bytes_read_without_panic(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let r = read(&raw);
            prop_assert!(r.tokens.len() <= MAX_TOKENS);
            for t in r.tokens {
                prop_assert!(!t.is_empty() && t.len() <= MAX_TOKEN);
            }
        }

        #[test]
        fn any_text_around_a_report_keeps_its_token(
            before in "[ -~\r\n]{0,300}",
            after in "[ -~\r\n]{0,300}",
        ) {
            prop_assume!(!unfold(&before).contains("/email/"));
            let raw = format!("{before}\r\n{}{after}", arf("tok.en", "abuse"));
            let r = read(raw.as_bytes());
            prop_assert_eq!(r.tokens, vec!["tok.en".to_owned()]);
        }
    }
}
