//! GPP section 6, `uspv1`: the US Privacy string carried verbatim.

use crate::error::Result;
use crate::usp::UsPrivacy;

/// GPP section id.
pub const ID: u16 = 6;
/// GPP section name.
pub const NAME: &str = "uspv1";

pub(crate) fn decode(s: &str) -> Result<UsPrivacy> {
    UsPrivacy::parse(s)
}

pub(crate) fn encode_into(u: &UsPrivacy, out: &mut String) {
    use core::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{u}");
}
