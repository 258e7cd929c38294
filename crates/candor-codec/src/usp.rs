//! IAB CCPA "US Privacy" strings (`1YNN`, `1---`), also GPP section 6 (`uspv1`).
//!
//! Four characters: version digit, then notice given, opted out of sale and
//! LSPA covered, each `Y`, `N` or `-` (not applicable). Parsing is strict
//! (upper case only) because these strings are compared byte-for-byte by
//! downstream vendors.

use core::fmt;
use core::str::FromStr;

use crate::error::{Error, Result};

/// The only version of the string.
pub const VERSION: u8 = 1;

/// One yes/no/not-applicable flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UspFlag {
    /// `Y`
    Yes,
    /// `N`
    No,
    /// `-`
    NotApplicable,
}

impl UspFlag {
    /// The flag's character.
    pub fn as_char(self) -> char {
        match self {
            Self::Yes => 'Y',
            Self::No => 'N',
            Self::NotApplicable => '-',
        }
    }

    /// Parses `Y`, `N` or `-`.
    pub fn from_char(c: char) -> Option<Self> {
        match c {
            'Y' => Some(Self::Yes),
            'N' => Some(Self::No),
            '-' => Some(Self::NotApplicable),
            _ => None,
        }
    }
}

/// A parsed US Privacy string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UsPrivacy {
    /// Specification version (always 1).
    pub version: u8,
    /// Explicit notice / opportunity to opt out given.
    pub notice: UspFlag,
    /// The user opted out of the sale of personal information.
    pub opt_out_sale: UspFlag,
    /// The publisher is a signatory to the IAB LSPA.
    pub lspa_covered: UspFlag,
}

impl UsPrivacy {
    /// `1---`: the string for "CCPA does not apply".
    pub const NOT_APPLICABLE: Self = Self {
        version: VERSION,
        notice: UspFlag::NotApplicable,
        opt_out_sale: UspFlag::NotApplicable,
        lspa_covered: UspFlag::NotApplicable,
    };

    /// Parses exactly four characters.
    pub fn parse(s: &str) -> Result<Self> {
        let mut chars = s.chars();
        let mut next = |position: usize| {
            chars.next().ok_or(Error::UsPrivacy {
                position,
                reason: "string shorter than 4 characters",
            })
        };
        let v = next(0)?;
        if v != '1' {
            return Err(Error::UsPrivacy {
                position: 0,
                reason: "version is not 1",
            });
        }
        let mut flags = [UspFlag::NotApplicable; 3];
        for (i, f) in flags.iter_mut().enumerate() {
            *f = UspFlag::from_char(next(i + 1)?).ok_or(Error::UsPrivacy {
                position: i + 1,
                reason: "expected Y, N or -",
            })?;
        }
        if chars.next().is_some() {
            return Err(Error::UsPrivacy {
                position: 4,
                reason: "string longer than 4 characters",
            });
        }
        Ok(Self {
            version: VERSION,
            notice: flags[0],
            opt_out_sale: flags[1],
            lspa_covered: flags[2],
        })
    }
}

impl fmt::Display for UsPrivacy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}{}",
            self.version,
            self.notice.as_char(),
            self.opt_out_sale.as_char(),
            self.lspa_covered.as_char()
        )
    }
}

impl FromStr for UsPrivacy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Parses a US Privacy string.
pub fn decode(s: &str) -> Result<UsPrivacy> {
    UsPrivacy::parse(s)
}

/// Formats a US Privacy string.
pub fn encode(u: &UsPrivacy) -> String {
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let u = decode("1YNN").unwrap();
        assert_eq!(u.notice, UspFlag::Yes);
        assert_eq!(u.opt_out_sale, UspFlag::No);
        assert_eq!(encode(&u), "1YNN");
        assert_eq!(decode("1---").unwrap(), UsPrivacy::NOT_APPLICABLE);
        assert_eq!(UsPrivacy::NOT_APPLICABLE.to_string(), "1---");
    }

    #[test]
    fn rejects_bad_input() {
        for (s, pos) in [
            ("", 0),
            ("2YNN", 0),
            ("1yNN", 1),
            ("1YN", 3),
            ("1YNNN", 4),
            ("1YNé", 3),
        ] {
            match decode(s) {
                Err(Error::UsPrivacy { position, .. }) => assert_eq!(position, pos, "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
    }
}
