//! The tokens in Candor's mails (issue 16), MACed under keys derived from the master
//! key, so every node accepts them and no secret is stored:
//!
//! - A **confirmation** token names the subject (by pseudonym, never the address), the
//!   list, an expiry and a random nonce; it is spent on first use
//!   (`Store::spend_link`, the same table as sign-in links) and only by a POST, so mail
//!   scanners that fetch links do not confirm for the person.
//! - An **unsubscribe** token names the subject, the list and, in a campaign's mail,
//!   the campaign (`#<id>` after the list, which a list name cannot contain, so tokens
//!   minted before campaigns were named still read), and never expires (an unsubscribe
//!   link must keep working, RFC 8058); leaving is idempotent, so it need not be
//!   single-use. It carries no address: it is opaque to whoever reads it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use candor_core::crypto::MasterKey;
use candor_core::{Sensitive, SubjectId, UnixMillis};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is malformed or not ours")]
    Forged,
    #[error("the link has expired")]
    Expired,
}

/// A confirmation token, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub subject: SubjectId,
    pub list: String,
    pub expires: UnixMillis,
    pub nonce: [u8; 16],
}

impl Confirmation {
    /// The id recorded as ledger evidence (`confirmation`): the nonce's first half, so
    /// the record names the very mail that was followed without holding the token.
    pub fn id(&self) -> String {
        hex::encode(&self.nonce[..8])
    }
}

/// An unsubscribe token, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    pub subject: SubjectId,
    pub list: String,
    /// The campaign whose mail carried the link (none in a test mail).
    pub campaign: Option<i64>,
}

pub struct MailKeys {
    confirm: Sensitive<[u8; 32]>,
    unsubscribe: Sensitive<[u8; 32]>,
}

impl std::fmt::Debug for MailKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailKeys(**redacted**)")
    }
}

fn mac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// `body.tag`, both base64url.
fn seal(key: &[u8], body: &[u8], tag_len: usize) -> String {
    let tag = mac(key, body);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(body),
        URL_SAFE_NO_PAD.encode(&tag[..tag_len])
    )
}

fn open(key: &[u8], token: &str, tag_len: usize) -> Result<Vec<u8>, TokenError> {
    if token.len() > 512 {
        return Err(TokenError::Forged);
    }
    let (body, tag) = token.split_once('.').ok_or(TokenError::Forged)?;
    let body = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Forged)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Forged)?;
    if tag.len() != tag_len || !bool::from(tag.ct_eq(&mac(key, &body)[..tag_len])) {
        return Err(TokenError::Forged);
    }
    Ok(body)
}

fn list_of(bytes: &[u8]) -> Result<String, TokenError> {
    let s = std::str::from_utf8(bytes).map_err(|_| TokenError::Forged)?;
    if s.is_empty() || s.len() > 64 {
        return Err(TokenError::Forged);
    }
    Ok(s.to_owned())
}

impl MailKeys {
    pub fn new(master: &MasterKey) -> Self {
        Self {
            confirm: master.derive_key("email confirmation link v1"),
            unsubscribe: master.derive_key("email unsubscribe link v1"),
        }
    }

    pub fn mint_confirmation(&self, subject: SubjectId, list: &str, expires: UnixMillis) -> String {
        let mut body = Vec::with_capacity(40 + list.len());
        body.extend_from_slice(subject.as_bytes());
        body.extend_from_slice(&expires.0.to_be_bytes());
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        body.extend_from_slice(&nonce);
        body.extend_from_slice(list.as_bytes());
        seal(self.confirm.expose(), &body, 32)
    }

    /// The confirmation a token carries, if genuine and unexpired at `now` (spending it
    /// is the caller's).
    pub fn check_confirmation(
        &self,
        token: &str,
        now: UnixMillis,
    ) -> Result<Confirmation, TokenError> {
        let body = open(self.confirm.expose(), token, 32)?;
        if body.len() <= 40 {
            return Err(TokenError::Forged);
        }
        let subject: [u8; 16] = body[..16].try_into().map_err(|_| TokenError::Forged)?;
        let exp: [u8; 8] = body[16..24].try_into().map_err(|_| TokenError::Forged)?;
        let nonce: [u8; 16] = body[24..40].try_into().map_err(|_| TokenError::Forged)?;
        let expires = UnixMillis(i64::from_be_bytes(exp));
        let list = list_of(&body[40..])?;
        if now.0 >= expires.0 {
            return Err(TokenError::Expired);
        }
        Ok(Confirmation {
            subject: SubjectId::from_bytes(subject),
            list,
            expires,
            nonce,
        })
    }

    pub fn mint_unsubscribe(
        &self,
        subject: SubjectId,
        list: &str,
        campaign: Option<i64>,
    ) -> String {
        let mut body = Vec::with_capacity(16 + list.len() + 21);
        body.extend_from_slice(subject.as_bytes());
        body.extend_from_slice(list.as_bytes());
        if let Some(c) = campaign {
            body.extend_from_slice(format!("#{c}").as_bytes());
        }
        seal(self.unsubscribe.expose(), &body, 16)
    }

    pub fn check_unsubscribe(&self, token: &str) -> Result<Unsubscribe, TokenError> {
        let body = open(self.unsubscribe.expose(), token, 16)?;
        if body.len() <= 16 {
            return Err(TokenError::Forged);
        }
        let subject: [u8; 16] = body[..16].try_into().map_err(|_| TokenError::Forged)?;
        let rest = &body[16..];
        let (list, campaign) = match rest.iter().position(|b| *b == b'#') {
            Some(at) => {
                let digits =
                    std::str::from_utf8(&rest[at + 1..]).map_err(|_| TokenError::Forged)?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(TokenError::Forged);
                }
                let c: i64 = digits.parse().map_err(|_| TokenError::Forged)?;
                (&rest[..at], Some(c))
            }
            None => (rest, None),
        };
        Ok(Unsubscribe {
            subject: SubjectId::from_bytes(subject),
            list: list_of(list)?,
            campaign,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> MailKeys {
        MailKeys::new(&MasterKey::from_bytes(&[4; 32]))
    }

    #[test]
    fn confirmation_round_trips_and_expires() {
        let k = keys();
        let s = SubjectId::random();
        let t = k.mint_confirmation(s, "news", UnixMillis(2_000));
        let c = k.check_confirmation(&t, UnixMillis(1_999)).unwrap();
        assert_eq!((c.subject, c.list.as_str()), (s, "news"));
        assert_eq!(c.id().len(), 16);
        assert_eq!(
            k.check_confirmation(&t, UnixMillis(2_000)),
            Err(TokenError::Expired)
        );
        // Two tokens for the same person and list differ (their nonces).
        assert_ne!(t, k.mint_confirmation(s, "news", UnixMillis(2_000)));
    }

    #[test]
    fn tampering_and_cross_use_are_refused() {
        let k = keys();
        let s = SubjectId::random();
        let c = k.mint_confirmation(s, "news", UnixMillis(i64::MAX));
        let u = k.mint_unsubscribe(s, "news", None);
        assert_eq!(k.check_unsubscribe(&u).unwrap().list, "news");
        let from_campaign = k.check_unsubscribe(&k.mint_unsubscribe(s, "news", Some(42)));
        assert_eq!(
            from_campaign,
            Ok(Unsubscribe {
                subject: s,
                list: "news".into(),
                campaign: Some(42)
            })
        );
        // A confirmation token is no unsubscribe token and the other way round.
        assert_eq!(k.check_unsubscribe(&c), Err(TokenError::Forged));
        assert_eq!(
            k.check_confirmation(&u, UnixMillis(0)),
            Err(TokenError::Forged)
        );
        // Another list under the same tag, another key, garbage.
        let (body, tag) = u.split_once('.').unwrap();
        let mut b = URL_SAFE_NO_PAD.decode(body).unwrap();
        b.extend_from_slice(b"x");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&b));
        assert_eq!(k.check_unsubscribe(&forged), Err(TokenError::Forged));
        let other = MailKeys::new(&MasterKey::from_bytes(&[5; 32]));
        assert_eq!(other.check_unsubscribe(&u), Err(TokenError::Forged));
        for junk in ["", ".", "a.b", "....", &"x".repeat(600)] {
            assert!(k.check_unsubscribe(junk).is_err());
            assert!(k.check_confirmation(junk, UnixMillis(0)).is_err());
        }
    }
}
