//! Who is calling: a source (by write key), a subject (by signed subject token) or an
//! admin (by bearer token). Every route names the roles it accepts.
//!
//! Secrets are compared in constant time over SHA-256 digests, and every configured
//! key is compared on every attempt, so neither timing nor early exit says which
//! prefix or which source was close.

use crate::config::{SourceKind, SourceSpec};
use crate::error::{ApiError, Code};
use axum::http::HeaderMap;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use candor_core::Sensitive;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The configured sources, ready for constant-time lookup.
pub struct Sources {
    list: Vec<(SourceSpec, [u8; 32])>,
}

impl Sources {
    pub fn new(specs: &[SourceSpec]) -> Self {
        Self {
            list: specs
                .iter()
                .map(|s| (s.clone(), digest(s.write_key.expose())))
                .collect(),
        }
    }

    pub fn authenticate(&self, key: &str) -> Option<&SourceSpec> {
        let d = digest(key);
        let mut found = None;
        for (spec, kd) in &self.list {
            if bool::from(kd.ct_eq(&d)) {
                found = Some(spec);
            }
        }
        found
    }
}

/// The write key from `Authorization: Basic base64(key:)`, as Segment's SDKs send it.
pub fn basic_username(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            Code::InvalidWriteKey,
            "the Authorization header is not valid Basic credentials",
        )
    };
    let v = v.to_str().map_err(|_| bad())?;
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let raw = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let user = s.split_once(':').map_or(s.as_str(), |(u, _)| u);
    Ok(Some(user.to_owned()))
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Resolves a write key (header first, then body) to its source.
pub fn source<'a>(
    sources: &'a Sources,
    header_key: Option<&str>,
    body_key: Option<&str>,
) -> Result<&'a SourceSpec, ApiError> {
    let key = header_key.or(body_key).ok_or_else(|| {
        ApiError::new(
            Code::MissingWriteKey,
            "no write key: send it as the Basic auth username or as writeKey in the body",
        )
    })?;
    sources
        .authenticate(key)
        .ok_or_else(|| ApiError::new(Code::InvalidWriteKey, "the write key is not valid"))
}

/// The source whose write key the headers carry (Basic auth), checked before any body
/// is read: a request with a bad key in its headers costs us no body. `None` when the
/// headers carry none (the key may then be in the body).
pub fn header_source<'a>(
    sources: &'a Sources,
    headers: &HeaderMap,
) -> Result<Option<&'a SourceSpec>, ApiError> {
    match basic_username(headers)? {
        Some(k) => source(sources, Some(&k), None).map(Some),
        None => Ok(None),
    }
}

/// Checks the admin bearer token.
pub fn admin(expected: Option<&Sensitive<String>>, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = bearer(headers).ok_or_else(|| {
        ApiError::new(
            Code::MissingCredentials,
            "this endpoint needs the admin bearer token",
        )
    })?;
    match expected {
        Some(t) if bool::from(digest(t.expose()).ct_eq(&digest(given))) => Ok(()),
        _ => Err(ApiError::new(
            Code::InvalidAdminToken,
            "the admin token is not valid",
        )),
    }
}

/// A subject token: `v1.<base64url(json)>.<base64url(hmac)>`, minted by the operator's
/// backend (or the admin API) for one logged-in user, so a browser can manage that
/// user's consent without holding a server key.
pub struct SubjectTokens {
    secret: Option<Sensitive<String>>,
}

type HmacSha256 = Hmac<Sha256>;

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
}

impl SubjectTokens {
    pub fn new(secret: Option<Sensitive<String>>) -> Self {
        Self { secret }
    }

    fn mac(&self, payload: &str) -> Option<[u8; 32]> {
        let secret = self.secret.as_ref()?;
        let mut m = <HmacSha256 as Mac>::new_from_slice(secret.expose().as_bytes()).ok()?;
        m.update(b"v1.");
        m.update(payload.as_bytes());
        Some(m.finalize().into_bytes().into())
    }

    pub fn mint(&self, user_id: &str, exp_unix: i64) -> Option<String> {
        let claims = serde_json::to_vec(&Claims {
            sub: user_id.to_owned(),
            exp: exp_unix,
        })
        .ok()?;
        let payload = URL_SAFE_NO_PAD.encode(claims);
        let mac = self.mac(&payload)?;
        Some(format!("v1.{payload}.{}", URL_SAFE_NO_PAD.encode(mac)))
    }

    /// The user id the token speaks for, if the token is authentic and unexpired.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<Sensitive<String>, ApiError> {
        let bad =
            |why: &str| ApiError::new(Code::InvalidSubjectToken, format!("subject token {why}"));
        let mut parts = token.splitn(3, '.');
        let (Some("v1"), Some(payload), Some(sig)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("is malformed"));
        };
        let expected = self
            .mac(payload)
            .ok_or_else(|| bad("cannot be checked: no secret is configured"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| bad("is malformed"))?;
        if !bool::from(sig.as_slice().ct_eq(&expected[..])) {
            return Err(bad("has a bad signature"));
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad("is malformed"))?;
        if claims.exp <= now_unix {
            return Err(bad("has expired"));
        }
        Ok(Sensitive::new(claims.sub))
    }
}

pub fn is_browser(s: &SourceSpec) -> bool {
    s.kind == SourceKind::Browser
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::SourceId;

    #[test]
    fn sources_match_exactly() {
        let s = Sources::new(&[SourceSpec {
            id: SourceId::parse("web").unwrap(),
            kind: SourceKind::Browser,
            write_key: Sensitive::new("key-12345".into()),
        }]);
        assert!(s.authenticate("key-12345").is_some());
        assert!(s.authenticate("key-1234").is_none());
        assert!(s.authenticate("").is_none());
    }

    #[test]
    fn subject_tokens() {
        let t = SubjectTokens::new(Some(Sensitive::new("s3cret".into())));
        let tok = t.mint("user-1", 100).unwrap();
        assert_eq!(t.verify(&tok, 99).unwrap().expose(), "user-1");
        assert!(t.verify(&tok, 100).is_err());
        let other = SubjectTokens::new(Some(Sensitive::new("other".into())));
        assert!(other.verify(&tok, 1).is_err());
        assert!(t.verify("v1.x.y", 1).is_err());
        assert!(t.verify("garbage", 1).is_err());
        assert!(SubjectTokens::new(None).verify(&tok, 1).is_err());
    }
}
