//! An email address, parsed once at the edge (parse, don't validate): what every other
//! part of Candor handles is known to be a plain `local@domain` that cannot carry a
//! line break, an angle bracket or a second address into a header or an SMTP command.
//!
//! Deliberately narrower than RFC 5322 (no quoted local parts, no comments, no
//! address literals): what people type into sign-up forms, and nothing an attacker
//! could use to smuggle SMTP syntax.

use std::fmt;

/// Why an address is refused (`invalid_email`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an email address is 3 to 254 characters")]
    Length,
    #[error("an email address has exactly one @, with something on both sides")]
    Shape,
    #[error("the part before the @ is at most 64 characters, without spaces, quotes or brackets")]
    Local,
    #[error("the part after the @ must be a domain name (letters, digits, hyphens, dots)")]
    Domain,
}

impl AddressError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        "invalid_email"
    }
}

/// A checked address: `local@domain`, the domain in lower case.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    local: String,
    domain: String,
}

impl fmt::Debug for EmailAddress {
    // An address is personal data: never in a log by way of `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress(**redacted**)")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

fn local_char(c: char) -> bool {
    // RFC 5322 atext (and dots, checked separately), or any non-ASCII letter (SMTPUTF8).
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

fn label_ok(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.chars().all(|c| {
            c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
        })
}

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let s = s.trim();
        if s.len() < 3 || s.len() > 254 {
            return Err(AddressError::Length);
        }
        let (local, domain) = s.split_once('@').ok_or(AddressError::Shape)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(AddressError::Shape);
        }
        if local.len() > 64
            || !local.chars().all(local_char)
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(AddressError::Local);
        }
        let domain = domain.to_lowercase();
        let domain = domain.strip_suffix('.').unwrap_or(&domain).to_owned();
        if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(label_ok) {
            return Err(AddressError::Domain);
        }
        Ok(Self {
            local: local.to_owned(),
            domain,
        })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The whole address in lower case: what identifies a mailbox for lookups (local
    /// parts are case-insensitive at every provider that matters).
    pub fn canonical(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }

    /// Whether anything in it needs SMTPUTF8.
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_addresses() {
        for (input, shown) in [
            ("ann@example.com", "ann@example.com"),
            ("  Ann.Lee+news@Example.COM ", "Ann.Lee+news@example.com"),
            ("x@localhost", "x@localhost"),
            ("o'neil@mail.example.test", "o'neil@mail.example.test"),
            ("jürgen@exämple.de", "jürgen@exämple.de"),
            ("a@b.c", "a@b.c"),
        ] {
            let a = EmailAddress::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(a.to_string(), shown);
        }
        assert_eq!(
            EmailAddress::parse("Ann@Example.com").unwrap().canonical(),
            "ann@example.com"
        );
    }

    #[test]
    fn bad_addresses() {
        for input in [
            "",
            "a",
            "@example.com",
            "ann@",
            "ann",
            "a@b@c",
            "ann lee@example.com",
            "<ann@example.com>",
            "ann@example.com>",
            "ann@exa mple.com",
            "ann\r\n@example.com",
            "ann@example.com\r\nRCPT TO:<x@y>",
            "\"ann\"@example.com",
            ".ann@example.com",
            "ann.@example.com",
            "a..b@example.com",
            "ann@-example.com",
            "ann@example..com",
            "ann@[127.0.0.1]",
            "ann@exam_ple.com",
            &format!("{}@example.com", "a".repeat(65)),
            &format!("a@{}.com", "b".repeat(250)),
        ] {
            assert!(EmailAddress::parse(input).is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn never_panics_and_never_accepts_smtp_syntax() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet: Vec<char> = "ab@.-<>: \r\n\"\\é\u{0}+_".chars().collect();
        for _ in 0..20_000 {
            let mut s = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            for i in 0..len {
                let r = x.rotate_left(i as u32 * 5);
                s.push(alphabet[(r % alphabet.len() as u64) as usize]);
            }
            if let Ok(a) = EmailAddress::parse(&s) {
                let t = a.to_string();
                assert!(
                    !t.contains(['<', '>', '\r', '\n', ' ', '"', '\\', '\0']),
                    "{t:?}"
                );
                assert_eq!(t.matches('@').count(), 1);
            }
        }
    }
}
