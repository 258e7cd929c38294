//! `[email]`, `[email.smtp]` and `[[email.lists]]`: email on consent (issue 16). Absent,
//! Candor sends no mail and the email routes answer `email_disabled`.
//!
//! Parsed strictly like the rest of the config. Every list belongs to a configured
//! purpose (`email_marketing` by default); a list's name stands in ledger evidence, so
//! it is a short token. Links in mails are absolute, built on `base_url`, which must be
//! `https://` except on loopback (tests, a local trial).

use super::ConfigError;
use candor_core::{PurposeId, Sensitive};
use candor_mail::{EmailAddress, SmtpSettings, TlsMode};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    from: String,
    from_name: Option<String>,
    base_url: String,
    /// Keep the IP address and user agent of confirmations (sealed, erasable).
    #[serde(default)]
    keep_origin: bool,
    confirm_ttl_hours: Option<u32>,
    pending_ttl_days: Option<u32>,
    resend_window_minutes: Option<u32>,
    resend_max: Option<u32>,
    rate_per_second: Option<f64>,
    max_attempts: Option<u32>,
    retry_base_seconds: Option<u32>,
    unsubscribe_mailto: Option<String>,
    smtp: RawSmtp,
    #[serde(default)]
    lists: Vec<RawList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    /// opportunistic (default) | required | never
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    hello_name: Option<String>,
    timeout_seconds: Option<u64>,
    /// Extra CA certificates (PEM) for a relay with a private CA.
    ca_file: Option<std::path::PathBuf>,
    /// Parallel SMTP connections of the sender (default 4).
    connections: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    name: String,
    title: String,
    #[serde(default)]
    description: String,
    purpose: Option<String>,
}

/// One mailing list.
#[derive(Clone, Debug, PartialEq)]
pub struct ListSpec {
    pub name: String,
    pub title: String,
    pub description: String,
    pub purpose: PurposeId,
}

/// Email, validated.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    pub from: EmailAddress,
    pub from_name: Option<String>,
    /// No trailing slash.
    pub base_url: String,
    pub keep_origin: bool,
    pub confirm_ttl: Duration,
    pub pending_ttl: Duration,
    pub resend_window: Duration,
    pub resend_max: u32,
    /// Messages per second the sender stays under.
    pub rate_per_second: f64,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub unsubscribe_mailto: Option<EmailAddress>,
    pub smtp: SmtpSettings,
    pub connections: usize,
    pub lists: Vec<ListSpec>,
}

impl EmailSettings {
    pub fn list(&self, name: &str) -> Option<&ListSpec> {
        self.lists.iter().find(|l| l.name == name)
    }
}

/// A list name: what can stand in ledger evidence and a URL without escaping.
fn list_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

pub(super) fn email(
    raw: Option<RawEmail>,
    purposes: &[PurposeId],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<EmailSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let from = EmailAddress::parse(&raw.from).map_err(|e| invalid(format!("email.from: {e}")))?;
    let base_url = raw.base_url.trim_end_matches('/').to_owned();
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| base_url.starts_with(p));
    if !(base_url.starts_with("https://") || loopback) || base_url.contains(['?', '#', ' ']) {
        return Err(invalid(
            "email.base_url: the https:// address people reach Candor at (http:// only on loopback), without query",
        ));
    }
    let default_purpose = PurposeId::parse("email_marketing").ok();
    let mut lists = Vec::new();
    for l in raw.lists {
        if !list_name_ok(&l.name) {
            return Err(invalid(format!(
                "email.lists: name {:?} must be 1 to 64 letters, digits, '_', '-' or '.'",
                l.name.chars().take(80).collect::<String>()
            )));
        }
        if lists.iter().any(|x: &ListSpec| x.name == l.name) {
            return Err(invalid(format!("email.lists: {} is listed twice", l.name)));
        }
        let purpose = match l.purpose {
            Some(p) => PurposeId::parse(&p)
                .map_err(|_| invalid(format!("email.lists.{}: purpose {p:?}", l.name)))?,
            None => default_purpose
                .clone()
                .ok_or_else(|| invalid("email_marketing"))?,
        };
        if !purposes.contains(&purpose) {
            return Err(invalid(format!(
                "email.lists.{}: purpose {purpose} is not configured (add it to [[purposes]] or name another)",
                l.name
            )));
        }
        if l.title.trim().is_empty() || l.title.len() > 200 || l.description.len() > 1000 {
            return Err(invalid(format!(
                "email.lists.{}: a title of 1 to 200 bytes, a description of at most 1000",
                l.name
            )));
        }
        lists.push(ListSpec {
            name: l.name,
            title: l.title,
            description: l.description,
            purpose,
        });
    }
    if lists.is_empty() {
        return Err(invalid(
            "email: name at least one [[email.lists]] (name, title, purpose)",
        ));
    }
    let tls = match raw.smtp.tls.as_deref().unwrap_or("opportunistic") {
        "opportunistic" => TlsMode::Opportunistic,
        "required" => TlsMode::Required,
        "never" => TlsMode::Never,
        other => {
            return Err(invalid(format!(
                "email.smtp.tls: {other:?} is not opportunistic, required or never"
            )))
        }
    };
    let password = super::secret(
        "email.smtp.password",
        raw.smtp.password,
        raw.smtp.password_env,
        env,
    )?;
    let credentials = match (raw.smtp.username, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => {
            return Err(invalid(
                "email.smtp: give both username and password (or password_env), or neither",
            ))
        }
    };
    let extra_root_pem = match raw.smtp.ca_file {
        Some(p) => Some(
            std::fs::read(&p)
                .map_err(|e| invalid(format!("email.smtp.ca_file {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let smtp = SmtpSettings {
        host: raw.smtp.host,
        port: raw.smtp.port.unwrap_or(587),
        tls,
        credentials: credentials.map(|(u, p): (String, Sensitive<String>)| (u, p.expose().clone())),
        hello_name: raw
            .smtp
            .hello_name
            .unwrap_or_else(|| "candor.localdomain".into()),
        timeout: Duration::from_secs(raw.smtp.timeout_seconds.unwrap_or(30).clamp(1, 600)),
        extra_root_pem,
    };
    let rate = raw.rate_per_second.unwrap_or(50.0);
    if !(rate.is_finite() && rate > 0.0 && rate <= 100_000.0) {
        return Err(invalid(
            "email.rate_per_second: more than 0, at most 100000",
        ));
    }
    let hours = |h: u32| Duration::from_secs(u64::from(h) * 3600);
    let confirm_ttl = raw.confirm_ttl_hours.unwrap_or(48);
    if !(1..=24 * 30).contains(&confirm_ttl) {
        return Err(invalid("email.confirm_ttl_hours: 1 to 720"));
    }
    let unsubscribe_mailto = raw
        .unsubscribe_mailto
        .map(|m| EmailAddress::parse(&m))
        .transpose()
        .map_err(|e| invalid(format!("email.unsubscribe_mailto: {e}")))?;
    Ok(Some(EmailSettings {
        from,
        from_name: raw.from_name,
        base_url,
        keep_origin: raw.keep_origin,
        confirm_ttl: hours(confirm_ttl),
        pending_ttl: hours(raw.pending_ttl_days.unwrap_or(7).clamp(1, 365) * 24),
        resend_window: Duration::from_secs(
            u64::from(raw.resend_window_minutes.unwrap_or(60).clamp(1, 24 * 60)) * 60,
        ),
        resend_max: raw.resend_max.unwrap_or(3).clamp(1, 20),
        rate_per_second: rate,
        max_attempts: raw.max_attempts.unwrap_or(8).clamp(1, 50),
        retry_base: Duration::from_secs(
            u64::from(raw.retry_base_seconds.unwrap_or(60)).clamp(1, 3600),
        ),
        unsubscribe_mailto,
        smtp,
        connections: raw.smtp.connections.unwrap_or(4).clamp(1, 64),
        lists,
    }))
}
