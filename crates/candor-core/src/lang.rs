//! Language tags for notice texts and prompt wording (parse, don't validate).
//!
//! A [`Language`] is a lower-cased BCP 47 tag restricted to what notices need
//! (`en`, `fr`, `pt-br`, `zh-hant-tw`): a 2–3 letter primary subtag and up to three
//! alphanumeric subtags. Pages say `fr-CA` or `FR`; they all compare equal once parsed.
//! Matching falls back from the exact tag to its primary language, then to the
//! catalog's default, so a prompt always has a text to show.

use std::fmt;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("language must be a tag like en, fr or pt-BR; got {0:?}")]
pub struct LanguageError(pub String);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Language(String);

impl Language {
    pub fn parse(value: &str) -> Result<Self, LanguageError> {
        let lower = value.trim().replace('_', "-").to_ascii_lowercase();
        let mut parts = lower.split('-');
        let primary = parts.next().unwrap_or_default();
        let ok_primary =
            (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase());
        let rest: Vec<&str> = parts.collect();
        let ok_rest = rest.len() <= 3
            && rest.iter().all(|p| {
                (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if ok_primary && ok_rest {
            Ok(Self(lower))
        } else {
            Err(LanguageError(value.chars().take(40).collect()))
        }
    }

    /// The default when a catalog names none.
    pub fn english() -> Self {
        Self("en".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The primary language subtag: `pt` for `pt-br`.
    pub fn primary(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }

    /// The best of `available` for someone who asked for `self`: the exact tag, else
    /// one with the same primary language (the bare one first), else `None`.
    pub fn best_match<'a, I>(&self, available: I) -> Option<&'a Language>
    where
        I: IntoIterator<Item = &'a Language>,
    {
        let mut same_primary: Option<&'a Language> = None;
        for l in available {
            if l == self {
                return Some(l);
            }
            if l.primary() == self.primary()
                && same_primary.is_none_or(|s| l.as_str().len() < s.as_str().len())
            {
                same_primary = Some(l);
            }
        }
        same_primary
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Language({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> Language {
        Language::parse(s).unwrap()
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(l("fr-CA").as_str(), "fr-ca");
        assert_eq!(l("pt_BR").as_str(), "pt-br");
        assert_eq!(l("EN").primary(), "en");
        for bad in [
            "",
            "e",
            "english",
            "fr--ca",
            "fr-toolongsubtag",
            "f1",
            "en-a-b-c-d",
        ] {
            assert!(Language::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn best_match_prefers_exact_then_primary() {
        let have = [l("fr"), l("fr-ca"), l("de"), l("pt-br")];
        assert_eq!(l("fr-ca").best_match(&have), Some(&have[1]));
        assert_eq!(l("fr-be").best_match(&have), Some(&have[0]));
        assert_eq!(l("pt").best_match(&have), Some(&have[3]));
        assert_eq!(l("es").best_match(&have), None);
    }
}
