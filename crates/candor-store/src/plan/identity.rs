//! Whether a credential may act for a subject (invariant 9: identity is proven, not
//! claimed), decided once for the writers (consent commands, against what the
//! transaction sees) and for the server (reads and the ingestion gate, against the
//! in-memory identity map).
//!
//! A server credential acts for anyone. A browser key speaks for the anonymous id it
//! presents, a subject token for its user id (and the anonymous id presented beside
//! it). The subject a request reaches through its owner's user id is the owner's
//! account. Any other subject is the credential's only while it holds no identifier
//! beyond those the request names: an anonymous id nobody has linked to anything. So a
//! browser key cannot reach a subject linked to a user id, and a subject token cannot
//! merge an anonymous id that already belongs to someone else's account.

use crate::types::Authority;
use crate::StoreError;
use candor_core::SubjectId;

/// `Ok` when a credential with `authority` may act for `subject`, which holds `held`
/// identifiers, `named` of them among those the request names. `owner_subject` is
/// the subject the authority's owner (a subject token's user id) resolves to, if any.
pub fn may_act(
    authority: &Authority,
    subject: SubjectId,
    owner_subject: Option<SubjectId>,
    held: usize,
    named: usize,
) -> Result<(), StoreError> {
    match authority {
        Authority::Any => Ok(()),
        Authority::Named { .. } if owner_subject == Some(subject) => Ok(()),
        Authority::Named { .. } if held <= named => Ok(()),
        Authority::Named { .. } => Err(StoreError::NotYours),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::crypto::LookupHash;

    #[test]
    fn only_the_owner_or_an_unlinked_anonymous_id() {
        let s = SubjectId::random();
        let named = Authority::Named { owner: None };
        let token = Authority::Named {
            owner: Some(LookupHash([1; 32])),
        };
        assert!(may_act(&Authority::Any, s, None, 9, 0).is_ok());
        // A browser key's anonymous id, alone on its subject.
        assert!(may_act(&named, s, None, 1, 1).is_ok());
        // ...linked to anything else: not the browser's.
        assert!(matches!(
            may_act(&named, s, None, 2, 1),
            Err(StoreError::NotYours)
        ));
        // A token's own account, however much is linked to it.
        assert!(may_act(&token, s, Some(s), 5, 1).is_ok());
        // Another account reached through an anonymous id: refused.
        assert!(may_act(&token, s, Some(SubjectId::random()), 2, 1).is_err());
        assert!(may_act(&token, s, None, 2, 1).is_err());
    }
}
