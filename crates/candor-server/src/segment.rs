//! The Segment HTTP Tracking API message format: parsing and validation at the edge.
//!
//! Messages are kept as JSON objects (the payload we store is the message itself,
//! normalized), and the fields Candor acts on are pulled out and checked here. A
//! message that fails any check is reported with its index and a stable code; the
//! batch it came in is then rejected whole.

use crate::error::Code;
use candor_core::event::EventKind;
use candor_core::field::Provenance;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::OffsetDateTime;

/// Segment's limits: 32 KB per message, 500 KB per batch.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
const MAX_ID_CHARS: usize = 512;

/// A validated message. It borrows the request text: the stored payload is the
/// message exactly as sent (minus a body write key), not a re-serialization.
#[derive(Debug)]
pub struct Message<'a> {
    pub kind: EventKind,
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub previous_id: Option<String>,
    pub email: Option<String>,
    pub device_id: Option<String>,
    /// `event` of a track, `name` of a page or screen.
    pub name: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub original_ms: Option<i64>,
    pub sent_at_ms: Option<i64>,
    /// `context.consent.categoryPreferences`, purposes the client says are off.
    pub client_refused: Vec<String>,
    /// `properties` as JSON text (an object), for the insights feature rules.
    pub properties: Option<&'a str>,
    /// An identify's `traits` (or else `context.traits`), for declared insight fields.
    pub traits: Option<Map<String, Value>>,
    /// `context.candor.share_in_aggregate`: declared fields the person shares in aggregate.
    pub share_in_aggregate: Vec<String>,
    /// `context.candor.provenance`: where the traits' field values came from
    /// (`observed` unless the message says `volunteered` or `inferred`).
    pub provenance: Provenance,
    /// The message's JSON text.
    pub raw: &'a str,
    /// The message carries a `writeKey`, which must not be stored.
    pub has_write_key: bool,
}

/// What the insight rules read of a message (`candor_insights::extract::Message`), over
/// the parse the edge already did.
pub struct InsightParts<'m> {
    props: HashMap<Cow<'m, str>, &'m RawValue>,
    traits: Option<&'m Map<String, Value>>,
    share: &'m [String],
}

impl candor_insights::extract::Message for InsightParts<'_> {
    fn property(&self, name: &str) -> Option<Cow<'_, str>> {
        serde_json::from_str::<Cow<'_, str>>(self.props.get(name)?.get()).ok()
    }

    fn declared_trait(&self, name: &str) -> Option<Option<Cow<'_, str>>> {
        Some(match self.traits?.get(name)? {
            Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        })
    }

    fn shares(&self, field: &str) -> bool {
        self.share.iter().any(|f| f == field)
    }
}

#[derive(Debug)]
pub struct Invalid {
    pub code: Code,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid {
        code: Code::InvalidMessage,
        message: message.into(),
    }
}

/// The top-level fields of a message, values left as unparsed (but valid) JSON.
type Fields<'a> = HashMap<Cow<'a, str>, &'a RawValue>;

fn parse_value<'a, T: serde::Deserialize<'a>>(
    raw: &'a RawValue,
    key: &str,
    what: &str,
) -> Result<T, Invalid> {
    serde_json::from_str(raw.get()).map_err(|_| invalid(format!("{key} must be {what}")))
}

/// An id field: a non-empty string or a number (which Segment accepts and stringifies).
fn id_field(m: &Fields<'_>, key: &str) -> Result<Option<String>, Invalid> {
    let Some(raw) = m.get(key) else {
        return Ok(None);
    };
    // Strings are the common case: borrow instead of building a `Value`.
    if raw.get().starts_with('"') {
        let s: Cow<'_, str> = parse_value(raw, key, "a string or a number")?;
        return match s.chars().count() {
            0 => Ok(None),
            n if n > MAX_ID_CHARS => Err(invalid(format!(
                "{key} is longer than {MAX_ID_CHARS} characters"
            ))),
            _ => Ok(Some(s.into_owned())),
        };
    }
    let v: Value = parse_value(raw, key, "a string or a number")?;
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(invalid(format!("{key} must be a string or a number"))),
    }
}

fn str_field(m: &Fields<'_>, key: &str) -> Result<Option<String>, Invalid> {
    let Some(raw) = m.get(key) else {
        return Ok(None);
    };
    let v: Option<String> = parse_value(raw, key, "a string")?;
    Ok(v)
}

/// Checks that a field is an object (or absent/null) without building it.
fn is_object(m: &Fields<'_>, key: &str) -> Result<bool, Invalid> {
    match m.get(key).map(|r| r.get().as_bytes().first()) {
        None | Some(Some(b'n')) => Ok(false),
        Some(Some(b'{')) => Ok(true),
        Some(_) => Err(invalid(format!("{key} must be an object"))),
    }
}

fn object_field(m: &Fields<'_>, key: &str) -> Result<Option<Map<String, Value>>, Invalid> {
    if !is_object(m, key)? {
        return Ok(None);
    }
    m.get(key)
        .map(|r| parse_value(r, key, "an object"))
        .transpose()
}

fn obj_id(o: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, Invalid> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_ID_CHARS => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(invalid(format!(
            "{path} must be a string of at most {MAX_ID_CHARS} characters"
        ))),
    }
}

pub fn parse_time(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
        .ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn time_field(m: &Fields<'_>, key: &str) -> Result<Option<i64>, Invalid> {
    match str_field(m, key)? {
        None => Ok(None),
        Some(s) => parse_time(&s).map(Some).ok_or_else(|| {
            invalid(format!(
                "{key} is not an ISO-8601 timestamp: {:?}",
                truncate(&s)
            ))
        }),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

pub fn format_time(t: impl Into<candor_core::UnixMillis>) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(t.into().0 as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// Validates one message. `implied` is the type given by the endpoint path (`/v1/track`).
pub fn parse_message(raw: &str, implied: Option<EventKind>) -> Result<Message<'_>, Invalid> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(Invalid {
            code: Code::EventTooLarge,
            message: format!(
                "message is {} bytes; the limit is {MAX_EVENT_BYTES}",
                raw.len()
            ),
        });
    }
    if !raw.trim_start().starts_with('{') {
        return Err(invalid("a message must be a JSON object"));
    }
    let f: Fields<'_> =
        serde_json::from_str(raw).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let kind = match (str_field(&f, "type")?, implied) {
        (Some(t), Some(k)) if t != k.as_str() => {
            return Err(invalid(format!(
                "type {:?} does not match the endpoint /v1/{}",
                truncate(&t),
                k.as_str()
            )))
        }
        (_, Some(k)) => k,
        (Some(t), None) => EventKind::parse(&t)
            .ok_or_else(|| invalid(format!("unknown type {:?}", truncate(&t))))?,
        (None, None) => return Err(invalid("type is required")),
    };
    let user_id = id_field(&f, "userId")?;
    let anonymous_id = id_field(&f, "anonymousId")?;
    let previous_id = id_field(&f, "previousId")?;
    let message_id = id_field(&f, "messageId")?;
    match kind {
        EventKind::Alias if previous_id.is_none() || user_id.is_none() => {
            return Err(invalid("alias needs previousId and userId"));
        }
        EventKind::Alias => {}
        _ if user_id.is_none() && anonymous_id.is_none() => {
            return Err(invalid("userId or anonymousId is required"));
        }
        _ => {}
    }
    let name = match kind {
        EventKind::Track => {
            let e = str_field(&f, "event")?.filter(|e| !e.is_empty());
            Some(e.ok_or_else(|| invalid("track needs an event name"))?)
        }
        EventKind::Page | EventKind::Screen => str_field(&f, "name")?,
        _ => None,
    };
    if kind == EventKind::Group && id_field(&f, "groupId")?.is_none() {
        return Err(invalid("group needs a groupId"));
    }
    let properties = is_object(&f, "properties")?
        .then(|| f.get("properties").map(|r| r.get()))
        .flatten();
    is_object(&f, "integrations")?;
    let mut traits = match kind {
        EventKind::Identify => object_field(&f, "traits")?,
        _ => {
            is_object(&f, "traits")?;
            None
        }
    };
    let email = match &traits {
        Some(t) => obj_id(t, "email", "traits.email")?,
        None => None,
    };
    let mut device_id = None;
    let mut client_refused = Vec::new();
    let mut share_in_aggregate = Vec::new();
    let mut provenance = Provenance::Observed;
    if let Some(mut ctx) = object_field(&f, "context")? {
        // Not validated either: an unknown provenance is the default, observed.
        if let Some(p) = ctx
            .get("candor")
            .and_then(|c| c.get("provenance"))
            .and_then(Value::as_str)
            .and_then(Provenance::parse)
        {
            provenance = p;
        }
        // Not validated: an unknown shape shares nothing (opt-in), it is not an error.
        if let Some(Value::Array(a)) = ctx.get("candor").and_then(|c| c.get("share_in_aggregate")) {
            share_in_aggregate = a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
        if kind == EventKind::Identify && traits.is_none() {
            if let Some(Value::Object(t)) = ctx.remove("traits") {
                traits = Some(t);
            }
        }
        match ctx.get("device") {
            None | Some(Value::Null) => {}
            Some(Value::Object(dev)) => device_id = obj_id(dev, "id", "context.device.id")?,
            Some(_) => return Err(invalid("context.device must be an object")),
        }
        let prefs = match ctx.get("consent") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) => match c.get("categoryPreferences") {
                None | Some(Value::Null) => None,
                Some(Value::Object(p)) => Some(p),
                Some(_) => {
                    return Err(invalid(
                        "context.consent.categoryPreferences must be an object",
                    ))
                }
            },
            Some(_) => return Err(invalid("context.consent must be an object")),
        };
        for (k, v) in prefs.into_iter().flatten() {
            match v {
                Value::Bool(false) => client_refused.push(k.clone()),
                Value::Bool(true) => {}
                _ => {
                    return Err(invalid(
                        "context.consent.categoryPreferences values must be booleans",
                    ))
                }
            }
        }
    }
    Ok(Message {
        kind,
        timestamp_ms: time_field(&f, "timestamp")?,
        original_ms: time_field(&f, "originalTimestamp")?,
        sent_at_ms: time_field(&f, "sentAt")?,
        message_id,
        user_id,
        anonymous_id,
        previous_id,
        email,
        device_id,
        name,
        client_refused,
        properties,
        traits,
        share_in_aggregate,
        provenance,
        has_write_key: f.contains_key("writeKey"),
        raw,
    })
}

impl Message<'_> {
    /// The JSON to store: the message as sent, with a `messageId` added if it had none
    /// (so exports can name every event) and any body `writeKey` removed (a secret).
    pub fn payload(&self, message_id: &str) -> Vec<u8> {
        if self.has_write_key {
            let mut v: Map<String, Value> = serde_json::from_str(self.raw).unwrap_or_default();
            v.remove("writeKey");
            v.insert("messageId".into(), Value::String(message_id.to_owned()));
            return serde_json::to_vec(&v).unwrap_or_default();
        }
        if self.message_id.is_some() {
            return self.raw.as_bytes().to_vec();
        }
        let body = self.raw.trim_start();
        let rest = body[1..].trim_start();
        let id = serde_json::to_string(message_id).unwrap_or_default();
        let mut out = Vec::with_capacity(body.len() + id.len() + 16);
        out.extend_from_slice(b"{\"messageId\":");
        out.extend_from_slice(id.as_bytes());
        if !rest.starts_with('}') {
            out.push(b',');
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }

    /// When the event happened, by Segment's rules: an explicit `timestamp` wins;
    /// otherwise `originalTimestamp` corrected for the device's clock skew, measured
    /// as the gap between its `sentAt` and our `receivedAt`.
    /// The message as the insight feature rules read it.
    pub fn insight_parts(&self) -> InsightParts<'_> {
        InsightParts {
            // Top-level keys only; values stay unparsed until a rule asks for one.
            props: self
                .properties
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_default(),
            traits: self.traits.as_ref(),
            share: &self.share_in_aggregate,
        }
    }

    pub fn event_ms(&self, batch_sent_at: Option<i64>, received_ms: i64) -> i64 {
        if let Some(t) = self.timestamp_ms {
            return t;
        }
        match (self.original_ms, self.sent_at_ms.or(batch_sent_at)) {
            (Some(o), Some(s)) => received_ms - (s - o),
            (Some(o), None) => o,
            _ => received_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_track() {
        let m = parse_message(
            r#"{"type":"track","event":"App Opened","userId":42,"context":{"consent":{"categoryPreferences":{"ads_insights":false,"analytics":true}}}}"#,
            None,
        )
        .unwrap();
        assert_eq!(m.kind, EventKind::Track);
        assert_eq!(m.user_id.as_deref(), Some("42"));
        assert_eq!(m.client_refused, vec!["ads_insights"]);
    }

    #[test]
    fn rejects() {
        let cases = [
            (r#"[]"#, "object"),
            (r#"{"type":"track","userId":"u"}"#, "event name"),
            (r#"{"type":"track","event":"x"}"#, "userId or anonymousId"),
            (r#"{"type":"nope","userId":"u"}"#, "unknown type"),
            (r#"{"type":"alias","userId":"u"}"#, "previousId"),
            (
                r#"{"type":"identify","userId":{"a":1}}"#,
                "string or a number",
            ),
            (
                r#"{"type":"identify","userId":"u","traits":[1]}"#,
                "traits must be an object",
            ),
            (
                r#"{"type":"identify","userId":"u","timestamp":"yesterday"}"#,
                "ISO-8601",
            ),
            (r#"{"type":"group","userId":"u"}"#, "groupId"),
        ];
        for (raw, needle) in cases {
            let e = parse_message(raw, None).unwrap_err();
            assert!(e.message.contains(needle), "{raw}: {}", e.message);
        }
        assert!(parse_message(r#"{"type":"page","userId":"u"}"#, Some(EventKind::Track)).is_err());
        let big = format!(
            r#"{{"type":"track","event":"x","userId":"u","properties":{{"p":"{}"}}}}"#,
            "a".repeat(MAX_EVENT_BYTES)
        );
        assert_eq!(
            parse_message(&big, None).unwrap_err().code,
            Code::EventTooLarge
        );
    }

    #[test]
    fn payload_is_the_message_as_sent() {
        let raw =
            r#"{"type":"track","event":"x","userId":"u","messageId":"m1","properties":{"a":1}}"#;
        assert_eq!(
            parse_message(raw, None).unwrap().payload("m1"),
            raw.as_bytes()
        );
        let m = parse_message(r#" { "type":"track","event":"x","userId":"u"}"#, None).unwrap();
        let v: Value = serde_json::from_slice(&m.payload("gen-1")).unwrap();
        assert_eq!(v["messageId"], "gen-1");
        assert_eq!(v["event"], "x");
        let m = parse_message(
            r#"{"event":"x","userId":"u","writeKey":"secret"}"#,
            Some(EventKind::Track),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&m.payload("m")).unwrap();
        assert!(v.get("writeKey").is_none());
    }

    #[test]
    fn timestamps() {
        let m = parse_message(
            r#"{"type":"track","event":"x","userId":"u","originalTimestamp":"2026-01-01T00:00:00Z","sentAt":"2026-01-01T00:00:10+00:00"}"#,
            None,
        )
        .unwrap();
        // Device clock 10 s behind the send: event happened 10 s before we received it.
        assert_eq!(m.event_ms(None, 1_000_000), 1_000_000 - 10_000);
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_time("2026-11-29T13:20:12.123456+00:00").map(|t| t % 1000),
            Some(123)
        );
    }
}
