//! The crate's single error type.
//!
//! Every variant names what was wrong and where (segment, bit offset, field),
//! because the usual reader of these messages is someone staring at a consent
//! string a CMP produced, who needs to know which part of it is broken.

use crate::tcf::PolicyViolation;

/// Everything that can go wrong while decoding or encoding a consent string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is empty.
    #[error("empty input")]
    Empty,

    /// The input is longer than any real consent string; refused before any work.
    #[error("input is {len} bytes long, over the {max}-byte limit")]
    InputTooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The limit ([`crate::MAX_INPUT_LEN`]).
        max: usize,
    },

    /// A segment is empty (two separators in a row, or a trailing separator).
    #[error("segment {segment} is empty")]
    EmptySegment {
        /// Zero-based index of the segment within its string or section.
        segment: usize,
    },

    /// A character outside the base64url alphabet.
    #[error("invalid base64url character {ch:?} at position {position} of segment {segment}")]
    InvalidCharacter {
        /// Zero-based segment index.
        segment: usize,
        /// Zero-based character position inside the segment.
        position: usize,
        /// The offending character.
        ch: char,
    },

    /// The bits ran out in the middle of a field.
    #[error(
        "truncated: {field} needs {needed} bits at bit offset {offset}, only {available} remain"
    )]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bit offset of the field inside its segment.
        offset: usize,
        /// Bits the field needs.
        needed: usize,
        /// Bits left in the segment.
        available: usize,
    },

    /// The TC string's core segment declares a version this crate does not decode.
    #[error("unsupported TC string version {0} (only version 2 is supported)")]
    UnsupportedVersion(u8),

    /// A TC string segment with a segment type this crate does not know.
    #[error("segment {segment} has unknown segment type {segment_type}")]
    UnknownSegmentType {
        /// Zero-based segment index.
        segment: usize,
        /// The 3-bit segment type found.
        segment_type: u8,
    },

    /// The same optional segment appears twice.
    #[error("segment {segment} repeats segment type {segment_type}")]
    DuplicateSegment {
        /// Zero-based segment index of the repeat.
        segment: usize,
        /// The repeated segment type.
        segment_type: u8,
    },

    /// A range entry whose end id is smaller than its start id.
    #[error("{field}: range {start}-{end} at bit offset {offset} ends before it starts")]
    RangeReversed {
        /// The vector being read.
        field: &'static str,
        /// Bit offset of the range entry.
        offset: usize,
        /// Start id.
        start: u16,
        /// End id.
        end: u16,
    },

    /// An id outside the range the field allows (0, or above a declared maximum).
    #[error("{field}: id {id} at bit offset {offset} is outside 1..={max}")]
    IdOutOfRange {
        /// The field being read or written.
        field: &'static str,
        /// Bit offset (0 when encoding).
        offset: usize,
        /// The id found.
        id: u32,
        /// The largest id allowed there.
        max: u32,
    },

    /// A 6-bit letter (language or country code) that is not A-Z.
    #[error("{field}: value {value} at bit offset {offset} is not a letter A-Z")]
    InvalidLetter {
        /// The field being read or written.
        field: &'static str,
        /// Bit offset (0 when encoding).
        offset: usize,
        /// The raw value.
        value: u32,
    },

    /// A model value that does not fit the field's width.
    #[error("{field}: value {value} does not fit in {bits} bits")]
    ValueOutOfRange {
        /// The field being encoded.
        field: &'static str,
        /// The value.
        value: u64,
        /// Width of the field.
        bits: u32,
    },

    /// Two publisher restrictions with the same purpose and restriction type.
    #[error(
        "publisher restriction for purpose {purpose_id} type {restriction_type} appears twice"
    )]
    DuplicateRestriction {
        /// Purpose id.
        purpose_id: u8,
        /// Restriction type.
        restriction_type: u8,
    },

    /// The encoder refused a model that breaks the TCF v2.2 policy.
    #[error("refused by TCF policy: {0}")]
    Policy(PolicyViolation),

    /// The GPP header's type field is not 3.
    #[error("GPP header type is {0}, expected 3")]
    GppHeaderType(u8),

    /// The GPP header's version is not 1.
    #[error("unsupported GPP version {0} (only version 1 is supported)")]
    GppVersion(u8),

    /// The header's section list and the sections present disagree.
    #[error("GPP header lists {listed} sections but the string carries {found}")]
    SectionCountMismatch {
        /// Section ids listed in the header (counted up to `found + 1`).
        listed: usize,
        /// Sections present after the header.
        found: usize,
    },

    /// A section id that appears twice (or is 0).
    #[error("GPP section id {0} is invalid or listed twice")]
    InvalidSectionId(u32),

    /// A Fibonacci code that never terminates or encodes a value too large.
    #[error("{field}: bad Fibonacci code at bit offset {offset}")]
    Fibonacci {
        /// The field being read.
        field: &'static str,
        /// Bit offset where the code starts.
        offset: usize,
    },

    /// A GPP section declares a version whose layout this crate does not know.
    #[error("GPP section {section}: unsupported version {version}")]
    UnsupportedSectionVersion {
        /// Section name.
        section: &'static str,
        /// The version found.
        version: u8,
    },

    /// A GPP section has more segments, or a subsection type, it cannot have.
    #[error("GPP section {section}: unexpected segment {segment} ({reason})")]
    UnexpectedSegment {
        /// Section name.
        section: &'static str,
        /// Zero-based segment index.
        segment: usize,
        /// What was wrong.
        reason: &'static str,
    },

    /// A list field given the wrong number of values.
    #[error("{field}: expected {expected} values, got {found}")]
    WrongArity {
        /// The field being set.
        field: &'static str,
        /// The field's arity.
        expected: usize,
        /// Values given.
        found: usize,
    },

    /// A field name that the section's field table does not have.
    #[error("GPP section {section} has no field {field:?}")]
    UnknownField {
        /// Section name.
        section: &'static str,
        /// The name asked for.
        field: String,
    },

    /// A US Privacy string that is not 4 characters of the right alphabet.
    #[error("US Privacy string: {reason} at position {position}")]
    UsPrivacy {
        /// Zero-based character position.
        position: usize,
        /// What was wrong.
        reason: &'static str,
    },

    /// JSON that does not have the vectors' shape (only with the `json` feature).
    #[error("JSON {path}: {reason}")]
    Json {
        /// Where in the document (e.g. `vendorConsents[3]`).
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
