//! GPP section 2, `tcfeuv2`: a TC string inside GPP.
//!
//! Same bits, padding and vendor-vector choices as a standalone TC string
//! (checked against the GPP vectors), so the codec is [`crate::tcf`]'s.

use crate::error::{Error, Result};
use crate::tcf::{self, TcModel};

/// GPP section id.
pub const ID: u16 = 2;
/// GPP section name.
pub const NAME: &str = "tcfeuv2";

pub(crate) fn decode(s: &str) -> Result<TcModel> {
    tcf::decode_model(s)
}

pub(crate) fn encode_into(m: &TcModel, out: &mut String) -> Result<()> {
    if let Some(v) = m.policy_violations().into_iter().next() {
        return Err(Error::Policy(v));
    }
    tcf::encode_into(m, out)
}
