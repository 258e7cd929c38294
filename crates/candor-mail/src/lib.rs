//! Email for Candor (issue 16): addresses parsed at the edge, messages composed with
//! lettre's builder, and a small SMTP client of our own whose send is two-phase.
//!
//! Why not lettre's transport as well: Candor's send queue promises that a subscriber
//! never gets a campaign's message twice, even across `kill -9`. An SMTP server takes a
//! message when it receives the final `.` of DATA; so the queue's durable record
//! ("this one is going out") must sit between the body and that dot. lettre's
//! transports send the body and the dot in one call, so the conversation is here:
//! [`Connection::begin`] sends everything but the dot, [`Pending::commit`] sends it.
//! A crash before the record leaves no message (the server discards one without its
//! dot); a crash after it leaves a row that is never sent again. The composition
//! (MIME, encodings, folding) stays lettre's, which is what it is for.
//!
//! - [`address`]: [`EmailAddress`], the only address type the rest of Candor handles.
//! - [`compose`]: a [`Draft`] to RFC 5322 bytes, with Candor's headers checked.
//! - [`smtp`]: the client (STARTTLS with rustls, AUTH PLAIN/LOGIN, bounded replies).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod address;
pub mod compose;
pub mod smtp;

pub use address::{AddressError, EmailAddress};
pub use compose::{compose, ComposeError, Draft};
pub use smtp::{Connection, Envelope, Pending, Reply, SmtpError, SmtpSettings, Stage, TlsMode};
