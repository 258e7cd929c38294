//! How a person signs in as themselves (issue 13): single-use sign-in links minted by
//! the operator's backend, and the short session cookie a link (or candor.js's
//! anonymous id) is exchanged for.
//!
//! - A link names the subject by its pseudonym (never the user id: a URL ends up in
//!   mail logs and browser history), an expiry and a random nonce, MACed under a key
//!   derived from the master key, so every node sharing the keys accepts it and no
//!   secret is stored. It is spent on first use (`Store::spend_link`, a primary key
//!   every node shares), and only by a POST: mail scanners that fetch links do not use
//!   them up.
//! - A session is a signed cookie (`HttpOnly`, `Secure`, `SameSite=Strict`, `Path=/me`,
//!   thirty minutes) naming the subject and how it was reached: a link (the person's
//!   account: they act as a subject token would) or a browser key's anonymous id (they
//!   act as that browser key would, for that id only). Every request re-derives what the
//!   session may do from what the store holds *now*: an erased subject, or an anonymous
//!   id since linked to an account, ends the session's power.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use candor_core::crypto::MasterKey;
use candor_core::{Sensitive, SourceId, SubjectId, UnixMillis};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "candor_me";
/// The double-submit cookie of the sign-in form.
pub const ENTER_COOKIE: &str = "candor_enter";
/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 30 * 60;
/// The longest a link may live (the default is fifteen minutes).
pub const MAX_LINK_SECONDS: i64 = 7 * 24 * 3600;
pub const DEFAULT_LINK_SECONDS: i64 = 15 * 60;

/// How a session reached its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A link the operator minted for the person's account.
    Link,
    /// candor.js's anonymous id, presented with this browser key.
    Anonymous(SourceId),
}

/// A genuine, unexpired session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub subject: SubjectId,
    pub via: Via,
    /// The cookie's value: what its CSRF token is derived from.
    pub value: String,
}

/// A link's contents once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub subject: SubjectId,
    pub expires: UnixMillis,
    pub nonce: [u8; 16],
}

/// Why a link is refused (all answered alike, as `invalid_link`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed or not ours")]
    Forged,
    #[error("the link has expired")]
    Expired,
}

/// The keys links and sessions are signed with.
pub struct PersonKeys {
    link: Sensitive<[u8; 32]>,
    session: Sensitive<[u8; 32]>,
}

const LINK_LEN: usize = 16 + 8 + 16;

impl PersonKeys {
    pub fn new(master: &MasterKey) -> Self {
        Self {
            link: master.derive_key("person sign-in link v1"),
            session: master.derive_key("person session v1"),
        }
    }

    /// A link token for `subject`, valid until `expires`.
    pub fn mint_link(&self, subject: SubjectId, expires: UnixMillis) -> String {
        let mut body = Vec::with_capacity(LINK_LEN);
        body.extend_from_slice(subject.as_bytes());
        body.extend_from_slice(&expires.0.to_be_bytes());
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        body.extend_from_slice(&nonce);
        let tag = mac(self.link.expose(), &body);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The link a token carries, if genuine and unexpired at `now` (spending it is the
    /// caller's: [`candor_store::Store::spend_link`]).
    pub fn check_link(&self, token: &str, now: UnixMillis) -> Result<Link, LinkError> {
        let (body, tag) = token.split_once('.').ok_or(LinkError::Forged)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| LinkError::Forged)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LinkError::Forged)?;
        if body.len() != LINK_LEN || !bool::from(tag.ct_eq(&mac(self.link.expose(), &body))) {
            return Err(LinkError::Forged);
        }
        let mut subject = [0u8; 16];
        subject.copy_from_slice(&body[..16]);
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&body[16..24]);
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&body[24..]);
        let expires = UnixMillis(i64::from_be_bytes(exp));
        if now.0 >= expires.0 {
            return Err(LinkError::Expired);
        }
        Ok(Link {
            subject: SubjectId::from_bytes(subject),
            expires,
            nonce,
        })
    }

    /// A new session cookie value for `subject`, valid until `now_s + SESSION_SECONDS`.
    pub fn issue(&self, subject: SubjectId, via: &Via, now_s: i64) -> String {
        let how = match via {
            Via::Link => "l".to_owned(),
            Via::Anonymous(src) => format!("a{}", hex::encode(src.as_str())),
        };
        let mut rnd = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut rnd);
        let body = format!(
            "m1.{}.{how}.{}.{}",
            hex::encode(subject.as_bytes()),
            now_s + SESSION_SECONDS,
            hex::encode(rnd)
        );
        format!(
            "{body}.{}",
            hex::encode(mac(self.session.expose(), body.as_bytes()))
        )
    }

    /// The session a cookie value carries, if genuine and unexpired.
    pub fn check(&self, value: &str, now_s: i64) -> Option<Session> {
        let (body, tag) = value.rsplit_once('.')?;
        let genuine = hex::decode(tag)
            .ok()
            .is_some_and(|t| bool::from(t.ct_eq(&mac(self.session.expose(), body.as_bytes()))));
        if !genuine {
            return None;
        }
        let mut parts = body.split('.');
        let (Some("m1"), Some(subject), Some(how), Some(exp), Some(_), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if !exp.parse::<i64>().is_ok_and(|e| now_s < e) {
            return None;
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(subject, &mut id).ok()?;
        let via = match how.split_at_checked(1)? {
            ("l", "") => Via::Link,
            ("a", src) => {
                let src = String::from_utf8(hex::decode(src).ok()?).ok()?;
                Via::Anonymous(SourceId::parse(&src).ok()?)
            }
            _ => return None,
        };
        Some(Session {
            subject: SubjectId::from_bytes(id),
            via,
            value: value.to_owned(),
        })
    }

    /// The CSRF token a session's forms carry.
    pub fn csrf(&self, session: &Session) -> String {
        hex::encode(
            &mac(
                self.session.expose(),
                format!("csrf:{}", session.value).as_bytes(),
            )[..16],
        )
    }

    pub fn csrf_ok(&self, session: &Session, given: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(given.as_bytes()))
    }
}

fn mac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(msg);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> PersonKeys {
        PersonKeys::new(&MasterKey::from_bytes(&[b; 32]))
    }

    #[test]
    fn links_are_signed_expire_and_belong_to_their_keys() {
        let k = keys(1);
        let s = SubjectId::random();
        let t = k.mint_link(s, UnixMillis(10_000));
        let l = k.check_link(&t, UnixMillis(9_999)).unwrap();
        assert_eq!((l.subject, l.expires), (s, UnixMillis(10_000)));
        assert_eq!(
            k.check_link(&t, UnixMillis(10_000)),
            Err(LinkError::Expired)
        );
        assert_eq!(
            keys(2).check_link(&t, UnixMillis(0)),
            Err(LinkError::Forged)
        );
        // Any byte changed in the body or the tag is a forgery.
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(b).unwrap();
            if forged != t {
                assert!(k.check_link(&forged, UnixMillis(0)).is_err(), "byte {i}");
            }
        }
        assert_ne!(
            t,
            k.mint_link(s, UnixMillis(10_000)),
            "each link has its own nonce"
        );
        assert!(k.check_link("", UnixMillis(0)).is_err());
        assert!(k.check_link("a.b.c", UnixMillis(0)).is_err());
    }

    #[test]
    fn sessions_are_signed_expire_and_name_how_they_were_reached() {
        let k = keys(1);
        let s = SubjectId::random();
        let v = k.issue(s, &Via::Link, 1_000);
        let got = k.check(&v, 1_001).unwrap();
        assert_eq!((got.subject, &got.via), (s, &Via::Link));
        assert!(k.check(&v, 1_000 + SESSION_SECONDS).is_none(), "expired");
        assert!(keys(2).check(&v, 1_001).is_none(), "other keys");
        let src = SourceId::parse("web").unwrap();
        let a = k.issue(s, &Via::Anonymous(src.clone()), 1_000);
        assert_eq!(k.check(&a, 1_001).unwrap().via, Via::Anonymous(src));
        // Swapping the subject for another keeps nothing genuine.
        let other = hex::encode(SubjectId::random().as_bytes());
        let swapped = v.replacen(&hex::encode(s.as_bytes()), &other, 1);
        assert!(k.check(&swapped, 1_001).is_none());
        // CSRF tokens are per session.
        let w = k.check(&k.issue(s, &Via::Link, 1_000), 1_001).unwrap();
        assert!(k.csrf_ok(&got, &k.csrf(&got)));
        assert!(!k.csrf_ok(&got, &k.csrf(&w)));
        assert!(!k.csrf_ok(&got, ""));
    }

    proptest::proptest! {
        /// Whatever arrives as a link or a cookie is refused (or, for a minted one,
        /// accepted) without a panic.
        #[test]
        fn arbitrary_links_and_cookies_are_refused_without_panic(t in ".{0,200}", b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let k = keys(3);
            proptest::prop_assert!(k.check_link(&t, UnixMillis(0)).is_err());
            proptest::prop_assert!(k.check(&t, 0).is_none());
            let encoded = format!("{}.{}", URL_SAFE_NO_PAD.encode(&b), URL_SAFE_NO_PAD.encode(&b));
            proptest::prop_assert!(k.check_link(&encoded, UnixMillis(0)).is_err());
        }
    }
}
