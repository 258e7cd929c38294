//! The GPP header: type 3, version 1, and the Fibonacci-coded list of the
//! section ids that follow, in order.

use crate::base64url;
use crate::bits::{BitReader, BitWriter};
use crate::error::{Error, Result};
use crate::fibonacci;

/// Header type field value.
pub const HEADER_TYPE: u8 = 3;
/// The GPP version this crate reads and writes.
pub const GPP_VERSION: u8 = 1;

/// Decodes the header and returns the section ids.
///
/// `sections_present` bounds how many ids the header may list: it can never
/// list more than there are sections after it, so a tiny header cannot make
/// us build a huge id list.
pub(crate) fn decode(s: &str, sections_present: usize, buf: &mut Vec<u8>) -> Result<Vec<u16>> {
    if s.is_empty() {
        return Err(Error::EmptySegment { segment: 0 });
    }
    let bits = base64url::decode_into(s, buf, 0)?;
    let mut r = BitReader::new(buf, bits);
    let header_type = r.read(6, "Type")? as u8;
    if header_type != HEADER_TYPE {
        return Err(Error::GppHeaderType(header_type));
    }
    let version = r.read(6, "Version")? as u8;
    if version != GPP_VERSION {
        return Err(Error::GppVersion(version));
    }
    let mut ids = Vec::with_capacity(sections_present);
    fibonacci::read_range(&mut r, "SectionIds", sections_present, &mut ids).map_err(
        |e| match e {
            Error::SectionCountMismatch { listed, .. } => Error::SectionCountMismatch {
                listed,
                found: sections_present,
            },
            other => other,
        },
    )?;
    Ok(ids)
}

/// Appends the encoded header for strictly ascending `ids`.
pub(crate) fn encode_into(ids: &[u16], out: &mut String) {
    let mut w = BitWriter::with_capacity(8);
    w.write(HEADER_TYPE.into(), 6);
    w.write(GPP_VERSION.into(), 6);
    fibonacci::write_range(&mut w, ids);
    // "Compressed" padding: whole bytes, then whole sextets.
    base64url::encode_into(&w.finish(8), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        // The GPP specification's examples ("DBABM", "DBACNY") predate the
        // byte-then-sextet padding the current library applies; we decode
        // both forms and write the current one.
        let mut buf = Vec::new();
        assert_eq!(decode("DBABM", 1, &mut buf).unwrap(), vec![2]);
        assert_eq!(decode("DBACNY", 2, &mut buf).unwrap(), vec![2, 6]);
        let mut out = String::new();
        encode_into(&[2], &mut out);
        assert_eq!(out, "DBABMA");
        let mut out = String::new();
        encode_into(&[2, 6], &mut out);
        assert_eq!(out, "DBACNYA");
        assert!(matches!(
            decode("DBACNY", 1, &mut buf),
            Err(Error::SectionCountMismatch { .. })
        ));
    }

    #[test]
    fn wrong_type_or_version() {
        let mut buf = Vec::new();
        assert_eq!(decode("BBABM", 1, &mut buf), Err(Error::GppHeaderType(1)));
        assert_eq!(decode("DCABM", 1, &mut buf), Err(Error::GppVersion(2)));
    }
}
