//! A small SMTP client (RFC 5321) over tokio, with STARTTLS (rustls) and AUTH, whose
//! send is two-phase: [`Connection::begin`] transmits the envelope and the body but not
//! the final `.`, and [`Pending::commit`] sends the dot and reads the reply. An SMTP
//! server takes a message only when it has the dot, so whatever a caller records
//! between the two phases is recorded before the message exists; a [`Pending`] dropped
//! without commit breaks the connection, and the server discards the unfinished
//! message.
//!
//! Every read and write has the configured timeout; replies are bounded (lines of
//! 4 KiB, 64 lines), so a hostile or broken server can make a send fail but not hang
//! or exhaust memory. Credentials cross only an encrypted connection. Nothing here
//! logs an address or a body.

use crate::EmailAddress;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// When to encrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS when the server offers it, plain text otherwise.
    Opportunistic,
    /// STARTTLS or no mail at all.
    Required,
    /// Never (a relay on the same host).
    Never,
}

/// Where and how to send.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// User name and password, sent only over TLS.
    pub credentials: Option<(String, String)>,
    /// The name this client gives in EHLO.
    pub hello_name: String,
    pub timeout: Duration,
    /// Extra CA certificates (PEM) besides the public roots: a relay with a private CA.
    pub extra_root_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "**redacted**")),
            )
            .field("hello_name", &self.hello_name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Who sends to whom (the SMTP envelope).
#[derive(Clone, Debug)]
pub struct Envelope {
    pub from: EmailAddress,
    pub to: EmailAddress,
}

/// A server reply: its code and text (lines joined by `\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut t: String = self.text.chars().take(120).collect();
        t.retain(|c| !c.is_control());
        write!(f, "{} {t}", self.code)
    }
}

/// Where a conversation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Commit,
    Reset,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("the server refused at {stage:?}: {reply}")]
    Rejected { stage: Stage, reply: Reply },
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server did not answer in time")]
    Timeout,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("TLS is required but the server does not offer STARTTLS")]
    TlsRequired,
    #[error("refusing to send credentials over an unencrypted connection")]
    AuthWithoutTls,
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("the connection is no longer usable")]
    Broken,
}

impl SmtpError {
    /// Only a 5xx reply is permanent; a network failure, a timeout, a 4xx, and a
    /// configuration that does not fit the server (TLS, AUTH, 8BITMIME) may pass. A
    /// queue bounces on "permanent", and a bounce suppresses the address: that is for
    /// what a server said about the message or the recipient, never for a fault of the
    /// relay or of Candor's settings, which an operator fixes while the mail waits.
    pub fn is_permanent(&self) -> bool {
        match self {
            SmtpError::Rejected { reply, .. } => reply.is_permanent(),
            _ => false,
        }
    }
}

/// A refusal, logged by stage and code only: a reply's text often echoes the address.
fn rejected(stage: Stage, reply: Reply) -> SmtpError {
    tracing::debug!(?stage, code = reply.code, "smtp refused");
    SmtpError::Rejected { stage, reply }
}

const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 64;

enum Stream {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<TlsStream<TcpStream>>>),
    Broken,
}

/// What the server said it supports (EHLO).
#[derive(Clone, Debug, Default)]
struct Extensions {
    starttls: bool,
    auth_plain: bool,
    auth_login: bool,
    eight_bit: bool,
    smtputf8: bool,
}

impl Extensions {
    fn parse(reply: &Reply) -> Self {
        let mut e = Self::default();
        for line in reply.text.lines().skip(1) {
            let mut words = line.split_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "STARTTLS" => e.starttls = true,
                "8BITMIME" => e.eight_bit = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "AUTH" => {
                    for m in words {
                        match m.to_ascii_uppercase().as_str() {
                            "PLAIN" => e.auth_plain = true,
                            "LOGIN" => e.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        e
    }
}

/// One SMTP session, ready to send.
pub struct Connection {
    stream: Stream,
    ext: Extensions,
    timeout: Duration,
    encrypted: bool,
}

async fn timed<T>(
    d: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, SmtpError> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r.map_err(SmtpError::Io),
        Err(_) => Err(SmtpError::Timeout),
    }
}

fn tls_config(s: &SmtpSettings) -> Result<Arc<rustls::ClientConfig>, SmtpError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = &s.extra_root_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| SmtpError::Tls(format!("extra CA certificates: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| SmtpError::Tls(format!("extra CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SmtpError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Connection {
    /// Connects, reads the greeting, says EHLO, upgrades to TLS per `settings.tls`,
    /// and authenticates when credentials are set.
    pub async fn open(settings: &SmtpSettings) -> Result<Self, SmtpError> {
        let t = settings.timeout;
        let tcp = timed(
            t,
            TcpStream::connect((settings.host.as_str(), settings.port)),
        )
        .await?;
        let _ = tcp.set_nodelay(true);
        let mut c = Self {
            stream: Stream::Plain(BufReader::new(tcp)),
            ext: Extensions::default(),
            timeout: t,
            encrypted: false,
        };
        let greeting = c.read_reply().await?;
        if greeting.code != 220 {
            return Err(rejected(Stage::Greeting, greeting));
        }
        c.ehlo(&settings.hello_name).await?;
        let want_tls = match settings.tls {
            TlsMode::Never => false,
            TlsMode::Opportunistic => c.ext.starttls,
            TlsMode::Required if c.ext.starttls => true,
            TlsMode::Required => return Err(SmtpError::TlsRequired),
        };
        if want_tls {
            c.starttls(settings).await?;
            c.ehlo(&settings.hello_name).await?;
        }
        if let Some((user, pass)) = &settings.credentials {
            if !c.encrypted {
                return Err(SmtpError::AuthWithoutTls);
            }
            c.auth(user, pass).await?;
        }
        tracing::debug!(
            encrypted = c.encrypted,
            eight_bit = c.ext.eight_bit,
            smtputf8 = c.ext.smtputf8,
            "smtp connection open"
        );
        Ok(c)
    }

    /// Whether another message may be sent on this connection.
    pub fn is_usable(&self) -> bool {
        !matches!(self.stream, Stream::Broken)
    }

    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), SmtpError> {
        let r = self.command(&format!("EHLO {name}")).await?;
        if r.code == 250 {
            self.ext = Extensions::parse(&r);
            return Ok(());
        }
        // Only a 5xx means "I do not speak ESMTP"; a 4xx (421: closing) is the server
        // going away, and HELO after it would read a closed connection.
        if !r.is_permanent() {
            return Err(rejected(Stage::Ehlo, r));
        }
        let r = self.command(&format!("HELO {name}")).await?;
        if r.code != 250 {
            return Err(rejected(Stage::Ehlo, r));
        }
        self.ext = Extensions::default();
        Ok(())
    }

    async fn starttls(&mut self, settings: &SmtpSettings) -> Result<(), SmtpError> {
        let r = self.command("STARTTLS").await?;
        if r.code != 220 {
            return Err(rejected(Stage::StartTls, r));
        }
        let Stream::Plain(reader) = std::mem::replace(&mut self.stream, Stream::Broken) else {
            return Err(SmtpError::Protocol(
                "STARTTLS on an encrypted connection".into(),
            ));
        };
        // Anything the server sent after its 220 would be read as if it had come over
        // TLS (the STARTTLS injection attack): refuse.
        if !reader.buffer().is_empty() {
            return Err(SmtpError::Protocol("data after the STARTTLS reply".into()));
        }
        let tcp = reader.into_inner();
        let name = ServerName::try_from(settings.host.clone())
            .map_err(|e| SmtpError::Tls(format!("server name: {e}")))?;
        let tls = timed(
            self.timeout,
            TlsConnector::from(tls_config(settings)?).connect(name, tcp),
        )
        .await
        .map_err(|e| match e {
            SmtpError::Io(e) => SmtpError::Tls(e.to_string()),
            other => other,
        })?;
        self.stream = Stream::Tls(Box::new(BufReader::new(tls)));
        self.encrypted = true;
        Ok(())
    }

    async fn auth(&mut self, user: &str, pass: &str) -> Result<(), SmtpError> {
        let fail = |reply| rejected(Stage::Auth, reply);
        if self.ext.auth_plain {
            let token = STANDARD.encode(format!("\0{user}\0{pass}"));
            let r = self.command(&format!("AUTH PLAIN {token}")).await?;
            return if r.code == 235 { Ok(()) } else { Err(fail(r)) };
        }
        if self.ext.auth_login {
            let r = self.command("AUTH LOGIN").await?;
            if r.code != 334 {
                return Err(fail(r));
            }
            let r = self.command(&STANDARD.encode(user)).await?;
            if r.code != 334 {
                return Err(fail(r));
            }
            let r = self.command(&STANDARD.encode(pass)).await?;
            return if r.code == 235 { Ok(()) } else { Err(fail(r)) };
        }
        Err(SmtpError::Unsupported(
            "the server offers no AUTH mechanism this client speaks (PLAIN, LOGIN)".into(),
        ))
    }

    /// Transmits the envelope and `body` (an RFC 5322 message), everything but the
    /// final dot. A refusal of MAIL, RCPT or DATA leaves the connection usable after
    /// [`Connection::reset`].
    pub async fn begin(
        &mut self,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<Pending<'_>, SmtpError> {
        if !self.is_usable() {
            return Err(SmtpError::Broken);
        }
        let mut params = String::new();
        if !body.is_ascii() {
            if !self.ext.eight_bit {
                return Err(SmtpError::Unsupported(
                    "an 8-bit message to a server without 8BITMIME".into(),
                ));
            }
            params.push_str(" BODY=8BITMIME");
        }
        if !(envelope.from.is_ascii() && envelope.to.is_ascii()) {
            if !self.ext.smtputf8 {
                return Err(SmtpError::Unsupported(
                    "an international address to a server without SMTPUTF8".into(),
                ));
            }
            params.push_str(" SMTPUTF8");
        }
        let step = |stage, r: Reply, want: u16| {
            if r.code == want {
                Ok(())
            } else {
                Err(rejected(stage, r))
            }
        };
        let r = self
            .command(&format!("MAIL FROM:<{}>{params}", envelope.from))
            .await?;
        step(Stage::MailFrom, r, 250)?;
        let r = self.command(&format!("RCPT TO:<{}>", envelope.to)).await?;
        if !(r.code == 250 || r.code == 251) {
            return Err(rejected(Stage::RcptTo, r));
        }
        let r = self.command("DATA").await?;
        step(Stage::Data, r, 354)?;
        let data = stuffed(body);
        if let Err(e) = self.write(&data).await {
            self.stream = Stream::Broken;
            return Err(e);
        }
        Ok(Pending {
            conn: self,
            done: false,
        })
    }

    /// Clears a failed transaction (RSET), so the connection can send again.
    pub async fn reset(&mut self) -> Result<(), SmtpError> {
        let r = self.command("RSET").await?;
        if r.code == 250 {
            Ok(())
        } else {
            self.stream = Stream::Broken;
            Err(rejected(Stage::Reset, r))
        }
    }

    /// Says goodbye (best effort).
    pub async fn quit(mut self) {
        let _ = self.command("QUIT").await;
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SmtpError> {
        let t = self.timeout;
        match &mut self.stream {
            Stream::Plain(s) => timed(t, write_all_flush(s, bytes)).await,
            Stream::Tls(s) => timed(t, write_all_flush(s.as_mut(), bytes)).await,
            Stream::Broken => Err(SmtpError::Broken),
        }
    }

    async fn command(&mut self, line: &str) -> Result<Reply, SmtpError> {
        if line.contains(['\r', '\n']) {
            return Err(SmtpError::Protocol("a line break inside a command".into()));
        }
        let r = async {
            self.write(format!("{line}\r\n").as_bytes()).await?;
            self.read_reply().await
        }
        .await;
        if r.is_err() {
            self.stream = Stream::Broken;
        }
        r
    }

    async fn read_reply(&mut self) -> Result<Reply, SmtpError> {
        let r = self.read_reply_inner().await;
        // Whatever went wrong, the next byte could be the rest of this reply: the
        // conversation is out of step and must not go on.
        if r.is_err() {
            self.stream = Stream::Broken;
        }
        r
    }

    async fn read_reply_inner(&mut self) -> Result<Reply, SmtpError> {
        let t = self.timeout;
        let mut text = Vec::new();
        let mut code = None;
        for _ in 0..MAX_LINES {
            let line = match &mut self.stream {
                Stream::Plain(s) => timed(t, read_line(s)).await,
                Stream::Tls(s) => timed(t, read_line(s.as_mut())).await,
                Stream::Broken => return Err(SmtpError::Broken),
            };
            let line = match line {
                Err(SmtpError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(SmtpError::Protocol(e.to_string()))
                }
                other => other?,
            };
            let line = line.trim_end_matches(['\r', '\n']);
            let bytes = line.as_bytes();
            if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
                return Err(SmtpError::Protocol("a reply without a code".into()));
            }
            let c: u16 = line[..3]
                .parse()
                .map_err(|_| SmtpError::Protocol("code".into()))?;
            // RFC 5321 4.2: the first digit is 2 to 5; anything else cannot be
            // classified as taken, transient or permanent.
            if !(200..600).contains(&c) {
                return Err(SmtpError::Protocol("a reply code outside 2xx-5xx".into()));
            }
            if code.is_some_and(|k| k != c) {
                return Err(SmtpError::Protocol("a reply whose lines disagree".into()));
            }
            code = Some(c);
            text.push(line.get(4..).unwrap_or("").to_owned());
            match bytes.get(3) {
                Some(b'-') => continue,
                None | Some(b' ') => {
                    return Ok(Reply {
                        code: c,
                        text: text.join("\n"),
                    })
                }
                Some(_) => {
                    return Err(SmtpError::Protocol("a malformed reply line".into()));
                }
            }
        }
        Err(SmtpError::Protocol("a reply of too many lines".into()))
    }
}

async fn write_all_flush<S: AsyncWrite + Unpin>(s: &mut S, b: &[u8]) -> std::io::Result<()> {
    s.write_all(b).await?;
    s.flush().await
}

/// One line (through `\n`), at most [`MAX_LINE`] bytes; an empty read is a closed
/// connection.
async fn read_line<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> std::io::Result<String> {
    let mut buf = Vec::new();
    loop {
        let available = s.fill_buf().await?;
        if available.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..take]);
        s.consume(take);
        if buf.len() > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a reply line over 4 KiB",
            ));
        }
        if done {
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}

/// The body as DATA sends it: every line ending CRLF, a leading `.` doubled (RFC 5321
/// 4.5.2), ending with CRLF so the dot that follows stands on a line of its own.
pub fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 4);
    let mut at_start = true;
    let mut prev = 0u8;
    for &b in body {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_start = b == b'\n';
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        if out.last() == Some(&b'\r') {
            out.push(b'\n');
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// A message whose body the server has, waiting for its final dot.
pub struct Pending<'a> {
    conn: &'a mut Connection,
    done: bool,
}

impl Pending<'_> {
    /// Sends the final dot and reads the server's answer to the whole message: a
    /// positive reply means it took the message, a negative one that it did not.
    /// An error means the dot was written (or not) with no answer read: the outcome is
    /// unknown.
    pub async fn commit(mut self) -> Result<Reply, SmtpError> {
        self.done = true;
        let r = async {
            self.conn.write(b".\r\n").await?;
            self.conn.read_reply().await
        }
        .await;
        if r.is_err() {
            self.conn.stream = Stream::Broken;
        }
        r
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Without its dot the message must never be completed: close the
            // connection (the server discards it) rather than reuse it.
            self.conn.stream = Stream::Broken;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_and_line_endings() {
        assert_eq!(stuffed(b"a\r\n.b\r\n"), b"a\r\n..b\r\n");
        assert_eq!(stuffed(b".\n..x\n"), b"..\r\n...x\r\n");
        assert_eq!(stuffed(b"x"), b"x\r\n");
        assert_eq!(stuffed(b"x\r"), b"x\r\n");
        assert_eq!(stuffed(b""), b"\r\n");
        assert_eq!(stuffed(b"a.b\r\n"), b"a.b\r\n");
    }

    #[test]
    fn extensions_from_ehlo() {
        let r = Reply {
            code: 250,
            text: "mx.example Hello\nSTARTTLS\nAUTH LOGIN PLAIN\n8BITMIME\nSIZE 100".into(),
        };
        let e = Extensions::parse(&r);
        assert!(e.starttls && e.auth_plain && e.auth_login && e.eight_bit && !e.smtputf8);
    }

    /// A server on loopback that writes `script` at once (replies ahead of the
    /// commands they answer, so every step reads what it would have read), then keeps
    /// the connection open, reading, until the client goes.
    async fn scripted(script: Vec<u8>) -> SmtpSettings {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let _ = sock.write_all(&script).await;
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut sock, &mut sink).await;
        });
        SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::Never,
            credentials: None,
            hello_name: "candor.test".into(),
            timeout: Duration::from_millis(500),
            extra_root_pem: None,
        }
    }

    /// The greeting as `open` reads it from `script`.
    async fn greeting(script: &[u8]) -> Result<Reply, SmtpError> {
        let s = scripted(script.to_vec()).await;
        let tcp = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
        let mut c = Connection {
            stream: Stream::Plain(BufReader::new(tcp)),
            ext: Extensions::default(),
            timeout: s.timeout,
            encrypted: false,
        };
        let r = c.read_reply().await;
        if r.is_err() {
            assert!(
                !c.is_usable(),
                "a failed read leaves the connection unusable"
            );
        }
        r
    }

    #[tokio::test]
    async fn replies_multi_line_and_malformed() {
        let r = greeting(b"220-mx.example ESMTP\r\n220-second\r\n220 last\r\n")
            .await
            .unwrap();
        assert_eq!(
            (r.code, r.text.as_str()),
            (220, "mx.example ESMTP\nsecond\nlast")
        );
        let r = greeting(b"220\n").await.unwrap();
        assert_eq!((r.code, r.text.as_str()), (220, ""));
        for (bad, what) in [
            (&b"hello\r\n"[..], "no code"),
            (b"22\r\n", "short"),
            (b"220-a\r\n250 b\r\n", "codes disagree"),
            (b"220_x\r\n", "bad separator"),
            (b"099 x\r\n", "code out of range"),
            (b"\xff\xfe\r\n", "not text"),
        ] {
            let e = greeting(bad).await.unwrap_err();
            assert!(matches!(e, SmtpError::Protocol(_)), "{what}: {e}");
        }
        let long = [
            b"220 ".to_vec(),
            vec![b'x'; MAX_LINE + 10],
            b"\r\n".to_vec(),
        ]
        .concat();
        assert!(matches!(greeting(&long).await, Err(SmtpError::Protocol(_))));
        let many = "220-x\r\n".repeat(MAX_LINES + 1);
        assert!(matches!(
            greeting(many.as_bytes()).await,
            Err(SmtpError::Protocol(_))
        ));
        // Silence: the timeout, not a hang.
        assert!(matches!(greeting(b"").await, Err(SmtpError::Timeout)));
        assert!(matches!(
            greeting(b"220-half").await,
            Err(SmtpError::Timeout)
        ));
    }

    #[tokio::test]
    async fn never_panics_on_random_server_bytes() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let alphabet = b"0123456789 -\r\n25abc\xff";
        for _ in 0..150 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let script: Vec<u8> = (0..len)
                .map(|i| alphabet[(x.rotate_left(i as u32 * 7) % alphabet.len() as u64) as usize])
                .collect();
            // Open runs the greeting, EHLO and whatever follows on arbitrary input.
            let mut s = scripted(script).await;
            s.timeout = Duration::from_millis(50);
            let _ = Connection::open(&s).await;
        }
    }

    #[tokio::test]
    async fn greeting_ehlo_and_helo() {
        let s = scripted(b"554 go away\r\n".to_vec()).await;
        let e = Connection::open(&s).await.err().unwrap();
        assert!(
            matches!(
                &e,
                SmtpError::Rejected {
                    stage: Stage::Greeting,
                    ..
                }
            ) && e.is_permanent(),
            "{e}"
        );
        // EHLO refused with 5xx: HELO, and no extensions.
        let s = scripted(b"220 hi\r\n502 no\r\n250 ok\r\n".to_vec()).await;
        let c = Connection::open(&s).await.unwrap();
        assert!(c.is_usable() && !c.ext.eight_bit);
        // A 4xx to EHLO is the server going away: no HELO, a transient error.
        let s = scripted(b"220 hi\r\n421 closing\r\n250 ok\r\n".to_vec()).await;
        let e = Connection::open(&s).await.err().unwrap();
        assert!(
            matches!(
                &e,
                SmtpError::Rejected {
                    stage: Stage::Ehlo,
                    ..
                }
            ) && !e.is_permanent(),
            "{e}"
        );
    }

    #[tokio::test]
    async fn starttls_refused_or_injected() {
        let ehlo = b"220 hi\r\n250-mx\r\n250 STARTTLS\r\n".to_vec();
        let mut s = scripted([ehlo.clone(), b"454 not now\r\n".to_vec()].concat()).await;
        s.tls = TlsMode::Required;
        let e = Connection::open(&s).await.err().unwrap();
        assert!(
            matches!(
                &e,
                SmtpError::Rejected {
                    stage: Stage::StartTls,
                    ..
                }
            ) && !e.is_permanent(),
            "{e}"
        );
        // Plain text after the 220 to STARTTLS would be read as if it were encrypted.
        let mut s = scripted([ehlo, b"220 go\r\n250 injected\r\n".to_vec()].concat()).await;
        s.tls = TlsMode::Opportunistic;
        let e = Connection::open(&s).await.err().unwrap();
        assert!(
            matches!(e, SmtpError::Protocol(_) | SmtpError::Tls(_)),
            "{e}"
        );
    }

    #[tokio::test]
    async fn what_begin_refuses_before_sending() {
        let env = |to: &str| Envelope {
            from: EmailAddress::parse("news@example.com").unwrap(),
            to: EmailAddress::parse(to).unwrap(),
        };
        // No 8BITMIME, no SMTPUTF8 offered.
        let s = scripted(b"220 hi\r\n250 mx\r\n".to_vec()).await;
        let mut c = Connection::open(&s).await.unwrap();
        let e = c
            .begin(&env("ann@example.org"), "é".as_bytes())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(e, SmtpError::Unsupported(_)) && !e.is_permanent(),
            "{e}"
        );
        let e = c
            .begin(&env("jürgen@example.org"), b"x")
            .await
            .err()
            .unwrap();
        assert!(matches!(e, SmtpError::Unsupported(_)), "{e}");
        assert!(
            c.is_usable(),
            "nothing was sent: the connection is still good"
        );
    }

    #[test]
    fn settings_debug_hides_the_password() {
        let s = SmtpSettings {
            host: "smtp.example.com".into(),
            port: 587,
            tls: TlsMode::Required,
            credentials: Some(("user".into(), "hunter2hunter2".into())),
            hello_name: "candor.example.com".into(),
            timeout: Duration::from_secs(5),
            extra_root_pem: None,
        };
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("user"),
            "{shown}"
        );
    }

    #[test]
    fn permanence() {
        let rej = |code| SmtpError::Rejected {
            stage: Stage::RcptTo,
            reply: Reply {
                code,
                text: String::new(),
            },
        };
        assert!(rej(550).is_permanent());
        assert!(!rej(451).is_permanent());
        assert!(!SmtpError::Timeout.is_permanent());
        assert!(!SmtpError::TlsRequired.is_permanent());
        assert!(!SmtpError::AuthWithoutTls.is_permanent());
    }
}
