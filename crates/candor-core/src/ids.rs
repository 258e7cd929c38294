//! Identifiers that can only hold valid values (parse, don't validate): once a
//! `PurposeId` exists, nothing downstream needs to check it again.

use std::fmt;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{kind} must be 1 to 64 characters of a-z, 0-9 and '_', starting with a letter; got {value:?}")]
    BadSlug { kind: &'static str, value: String },
    #[error("subject id must be 32 lowercase hex characters")]
    BadSubjectId,
}

fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

macro_rules! slug_id {
    ($(#[$m:meta])* $name:ident, $kind:literal) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                if is_slug(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(IdError::BadSlug { kind: $kind, value: value.chars().take(80).collect() })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

slug_id!(
    /// Why data is processed, e.g. `analytics`.
    PurposeId,
    "purpose id"
);
slug_id!(
    /// What kind of data, e.g. `app_usage`.
    CategoryId,
    "data category id"
);
slug_id!(
    /// A configured source of events (an app, a site, a backend).
    SourceId,
    "source id"
);
slug_id!(
    /// A consent prompt variant, e.g. `standard` or `compact_bar`.
    VariantId,
    "variant id"
);

/// A subject's pseudonym: 128 random bits. It is what the ledger records; once the
/// identifiers that resolve to it are erased, it links to no one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectId([u8; 16]);

impl SubjectId {
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
        Self(b)
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(b)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() != 32 || s.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(IdError::BadSubjectId);
        }
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).map_err(|_| IdError::BadSubjectId)?;
        Ok(Self(b))
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(PurposeId::parse("ads_insights").is_ok());
        for bad in ["", "Ads", "1x", "a-b", "a b", &"a".repeat(65)] {
            assert!(PurposeId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subject_round_trip() {
        let s = SubjectId::random();
        assert_eq!(SubjectId::parse(&s.to_string()).unwrap(), s);
        assert!(SubjectId::parse("zz").is_err());
        assert!(SubjectId::parse(&"A".repeat(32)).is_err());
    }
}
