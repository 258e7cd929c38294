//! Codecs for IAB consent strings: pure Rust, no I/O, no allocation per bit.
//!
//! Module map:
//! - [`tcf`]: TCF v2 (2.2/2.3) TC strings. [`tcf::decode`] gives a
//!   [`tcf::TcString`] (a [`tcf::TcModel`] plus policy warnings);
//!   [`tcf::encode`] writes a model back, bit-for-bit as the IAB reference
//!   encoder `@iabtechlabtcf/core` would. Submodules: `core` (core segment),
//!   `vendors` (vendor sets and bitfield/range vectors), `restrictions`
//!   (publisher restrictions), `publisher` (publisher TC segment), `policy`
//!   (TCF v2.2 policy checks).
//! - [`gpp`]: Global Privacy Platform strings. `header` (section id list),
//!   `section` (table-driven US sections and their registry), `usnat`
//!   (id 7 field table), `uspv1` (id 6), `tcfeuv2` (id 2, reusing [`tcf`]).
//! - [`usp`]: CCPA US Privacy strings (`1YNN`).
//! - [`error`]: the one [`Error`] type.
//! - Building blocks: `bits` (MSB-first bit reader/writer), `base64url`,
//!   `fibonacci` (GPP's Fibonacci integer codes), [`timestamp`].
//! - `json` (feature `json`): conversion to and from the JSON shape of the
//!   conformance vectors, exposed as `tcf::to_json`, `tcf::from_json`,
//!   `gpp::to_json` and `gpp::from_json`.
//!
//! Every decoder refuses input longer than [`MAX_INPUT_LEN`] up front and
//! never allocates for a length it has not seen the bits for, so hostile
//! input costs bounded time and memory and yields an [`Error`], not a panic.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub(crate) mod base64url;
pub(crate) mod bits;
pub mod error;
pub(crate) mod fibonacci;
pub mod gpp;
#[cfg(feature = "json")]
mod json;
pub mod tcf;
pub mod timestamp;
pub mod usp;

pub use error::{Error, Result};

/// Longest input any decoder accepts, in bytes.
///
/// A TC string with three full 65535-vendor bitfields is about 33 KB; real
/// strings are a few KB. 128 KiB leaves room for large GPP strings while
/// refusing megabyte-sized garbage before looking at it.
pub const MAX_INPUT_LEN: usize = 128 * 1024;

/// Shared up-front checks: non-empty and not absurdly long.
pub(crate) fn check_input(s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::Empty);
    }
    if s.len() > MAX_INPUT_LEN {
        return Err(Error::InputTooLong {
            len: s.len(),
            max: MAX_INPUT_LEN,
        });
    }
    Ok(())
}
