//! A minimal SMTP client (RFC 5321): EHLO (HELO fallback), optional AUTH PLAIN, MAIL FROM,
//! RCPT TO per recipient, DATA with dot-stuffing, QUIT; every reply code is checked.
//!
//! TLS (rustls, certificates checked against the system's roots and an optional CA file):
//! `tls` from the first byte (SMTPS), or `starttls` after EHLO (RFC 3207), which must succeed:
//! there is no fallback to plain text, and anything the server sent after its STARTTLS reply
//! and before the handshake is refused (command injection). A password is only sent over TLS
//! or to a loopback relay; without AUTH, plain SMTP goes to any host (an internal relay).
//!
//! (One file of about 480 lines: one protocol client, whose dialogue and TLS upgrade follow RFC
//! 5321 and RFC 3207 step by step.)

use super::redact::Redactor;
use super::{Delivery, Failure, SmtpSection};
use crate::time::{self, Timestamp};
use crate::{Error, Result};
use pgdrill_pg::Secret;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

/// SMTP's line limit is 1000 octets with CRLF; longer bodies go base64.
const MAX_LINE: usize = 990;
const MAX_REPLY_LINES: usize = 64;

/// How the connection is secured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Security {
    Plain,
    StartTls,
    Tls,
}

#[derive(Debug)]
pub(super) struct SmtpTarget {
    host: String,
    port: u16,
    from: String,
    to: Vec<String>,
    auth: Option<(String, Secret)>,
    security: Security,
    /// Built once (the system's roots are read here), for `StartTls` and `Tls`.
    tls: Option<Arc<ClientConfig>>,
}

/// The checks of `[alerts.smtp]` that need no environment: run when the config is loaded,
/// so every command refuses a bad section, and again when the alerter is built.
pub(super) fn check(s: &SmtpSection) -> Result<Security> {
    let invalid = |m: String| Err(Error::Invalid(format!("alerts.smtp: {m}")));
    let security = match (s.tls, s.starttls) {
        (false, false) => Security::Plain,
        (false, true) => Security::StartTls,
        (true, false) => Security::Tls,
        (true, true) => {
            return invalid(
                "tls and starttls exclude each other: tls = true for port 465 (SMTPS), \
                     starttls = true for port 587"
                    .into(),
            );
        }
    };
    if s.ca_file.is_some() && security == Security::Plain {
        return invalid("ca_file is only used with tls = true or starttls = true".into());
    }
    let host = s.host.trim();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return invalid("host must be a host name or address".into());
    }
    for addr in std::iter::once(&s.from).chain(&s.to) {
        if !is_plain_address(addr) {
            return invalid(format!("{addr:?} is not a plain email address"));
        }
    }
    if s.to.is_empty() {
        return invalid("to lists no recipient".into());
    }
    match (&s.username, &s.password_env) {
        (None, None) => {}
        (Some(_), Some(_)) => {
            if security == Security::Plain && !is_loopback(host) {
                return invalid(format!(
                    "AUTH without TLS is only allowed to a loopback relay, not {host}; \
                         set starttls = true (port 587) or tls = true (port 465)"
                ));
            }
        }
        _ => return invalid("username and password_env go together".into()),
    }
    Ok(security)
}

impl SmtpTarget {
    pub(super) fn from_config(
        s: &SmtpSection,
        env: &BTreeMap<String, String>,
        red: &mut Redactor,
    ) -> Result<SmtpTarget> {
        let security = check(s)?;
        let host = s.host.trim();
        let auth = match (&s.username, &s.password_env) {
            (Some(user), Some(var)) => {
                let pass = super::env_value(env, "alerts.smtp.password_env", var, red)?;
                Some((user.clone(), Secret::new(pass)))
            }
            _ => None,
        };
        let tls = match security {
            Security::Plain => None,
            _ => Some(tls_config(s.ca_file.as_deref())?),
        };
        let default_port = match security {
            Security::Plain => 25,
            Security::StartTls => 587,
            Security::Tls => 465,
        };
        Ok(SmtpTarget {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: s.port.unwrap_or(default_port),
            from: s.from.clone(),
            to: s.to.clone(),
            auth,
            security,
            tls,
        })
    }
}

/// A TLS client trusting the system's roots and the certificates of `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped (as reqwest does); none at all is only an
    // error when no CA file is given either.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let bad = |e: String| {
            Error::Invalid(format!(
                "alerts.smtp.ca_file {}: {e}; give a PEM file of CA certificates",
                path.display()
            ))
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(Error::Invalid(
            "alerts.smtp: no CA certificates found on this system to check the server with; \
             install ca-certificates or set ca_file"
                .into(),
        ));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Failed(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn is_plain_address(a: &str) -> bool {
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>,;:\"()[]\\".contains(c);
    matches!(a.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty()) && !a.contains(bad)
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The DATA payload: headers, the body dot-stuffed (or base64), and the final `.` line.
pub(super) fn render(t: &SmtpTarget, subject: &str, body: &str, date: Timestamp) -> String {
    let lines: Vec<&str> = body.lines().collect();
    let plain = body.is_ascii() && lines.iter().all(|l| l.len() <= MAX_LINE);
    let mut out = String::new();
    let mut header = |name: &str, value: &str| out.push_str(&format!("{name}: {value}\r\n"));
    header("Date", &time::rfc2822(date));
    header("From", &t.from);
    header("To", &t.to.join(",\r\n "));
    header("Subject", &encode_header(subject));
    header(
        "Message-ID",
        &format!(
            "<{:016x}.{}@pgdrill>",
            rand::random::<u64>(),
            date.as_second()
        ),
    );
    header("MIME-Version", "1.0");
    header("Content-Type", "text/plain; charset=utf-8");
    header(
        "Content-Transfer-Encoding",
        if plain { "7bit" } else { "base64" },
    );
    header("Auto-Submitted", "auto-generated");
    out.push_str("\r\n");
    if plain {
        for line in lines {
            if line.starts_with('.') {
                out.push('.');
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
    } else {
        let encoded = base64(body.replace('\n', "\r\n").as_bytes());
        for chunk in encoded.as_bytes().chunks(76) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push_str("\r\n");
        }
    }
    out.push_str(".\r\n");
    out
}

/// ASCII as is; otherwise RFC 2047 encoded words of at most 45 bytes each.
fn encode_header(v: &str) -> String {
    if v.is_ascii() {
        return v.to_string();
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in v.chars() {
        if cur.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(cur.as_bytes())));
            cur.clear();
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(cur.as_bytes())));
    }
    words.join("\r\n ")
}

pub(super) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn describe(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.text.chars().take(200).collect::<String>()
        )
    }
}

/// A plain or TLS connection.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    io: BufReader<Box<dyn Io>>,
}

impl Conn {
    async fn reply(&mut self) -> std::result::Result<Reply, Failure> {
        let mut text = Vec::new();
        for _ in 0..MAX_REPLY_LINES {
            let mut line = Vec::new();
            let n = (&mut self.io)
                .take(2048)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| Failure::transient(format!("read from the server: {e}")))?;
            if n == 0 || !line.ends_with(b"\n") {
                return Err(Failure::transient("the server closed the connection"));
            }
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let (Some(code), sep) = (code, line.as_bytes().get(3).copied()) else {
                return Err(Failure::permanent("malformed reply from the server"));
            };
            text.push(line.get(4..).unwrap_or("").to_string());
            if sep != Some(b'-') {
                return Ok(Reply {
                    code,
                    text: text.join(" "),
                });
            }
        }
        Err(Failure::permanent("reply from the server is too long"))
    }

    async fn send(&mut self, line: &str) -> std::result::Result<(), Failure> {
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| Failure::transient(format!("write to the server: {e}")))
    }

    /// A reply outside `ok`: 4xx may pass on retry, 5xx will not.
    async fn expect(&mut self, what: &str, ok: &[u16]) -> std::result::Result<Reply, Failure> {
        let r = self.reply().await?;
        if ok.contains(&r.code) {
            return Ok(r);
        }
        Err(Failure {
            message: format!("{what} answered {}", r.describe()),
            retryable: (400..500).contains(&r.code),
        })
    }
}

/// The TLS handshake over `stream`, the server's certificate checked for `t.host`.
async fn handshake(
    t: &SmtpTarget,
    stream: Box<dyn Io>,
) -> std::result::Result<Box<dyn Io>, Failure> {
    let (Some(tls), Ok(name)) = (&t.tls, ServerName::try_from(t.host.clone())) else {
        return Err(Failure::permanent(format!(
            "{} is not a host name TLS can check a certificate for",
            t.host
        )));
    };
    let tls = TlsConnector::from(tls.clone());
    let stream = tls.connect(name, stream).await.map_err(|e| {
        // A certificate that does not verify will not verify on retry either.
        let permanent = e
            .get_ref()
            .is_some_and(|inner| inner.to_string().contains("certificate"));
        Failure {
            message: format!("TLS with {}:{} failed ({e})", t.host, t.port),
            retryable: !permanent,
        }
    })?;
    Ok(Box::new(stream))
}

/// EHLO (HELO when refused); the EHLO reply when it was accepted.
async fn greet(c: &mut Conn, helo: &str) -> std::result::Result<Option<Reply>, Failure> {
    c.send(&format!("EHLO {helo}")).await?;
    let r = c.reply().await?;
    if r.code == 250 {
        return Ok(Some(r));
    }
    c.send(&format!("HELO {helo}")).await?;
    c.expect("HELO", &[250]).await?;
    Ok(None)
}

/// One delivery attempt of an already rendered message.
pub(super) async fn send(t: &SmtpTarget, data: &str) -> Delivery {
    let stream = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| {
            Failure::transient(format!("could not connect to {}:{} ({e})", t.host, t.port))
        })?;
    let helo = match stream.local_addr() {
        Ok(SocketAddr::V4(a)) => format!("[{}]", a.ip()),
        Ok(SocketAddr::V6(a)) => format!("[IPv6:{}]", a.ip()),
        Err(_) => "localhost".to_string(),
    };
    let mut stream: Box<dyn Io> = Box::new(stream);
    if t.security == Security::Tls {
        stream = handshake(t, stream).await?;
    }
    let mut c = Conn {
        io: BufReader::new(stream),
    };
    c.expect("the greeting", &[220]).await?;
    let ehlo = greet(&mut c, &helo).await?;
    if t.security == Security::StartTls {
        if ehlo.is_none() {
            return Err(Failure::permanent(
                "the server refused EHLO, so it offers no STARTTLS (starttls = true)",
            ));
        }
        c.send("STARTTLS").await?;
        c.expect("STARTTLS", &[220]).await?;
        // Bytes already buffered were sent before the handshake: a man in the middle can
        // inject commands there (CVE-2011-0411), so they are refused, not read.
        if !c.io.buffer().is_empty() {
            return Err(Failure::permanent(
                "the server sent data after its STARTTLS reply, before the TLS handshake",
            ));
        }
        let plain = std::mem::replace(&mut c.io, BufReader::new(Box::new(tokio::io::empty())));
        c.io = BufReader::new(handshake(t, plain.into_inner()).await?);
        // Everything learned before TLS is forgotten (RFC 3207 §4.2): greet again.
        greet(&mut c, &helo).await?;
    }
    if let Some((user, pass)) = &t.auth {
        let token = base64(format!("\0{user}\0{}", pass.expose()).as_bytes());
        c.send(&format!("AUTH PLAIN {token}")).await?;
        // The reply text is not shown: some servers echo what they were sent.
        let r = c.reply().await?;
        if r.code != 235 {
            return Err(Failure {
                message: format!("AUTH PLAIN answered {}", r.code),
                retryable: (400..500).contains(&r.code),
            });
        }
    }
    c.send(&format!("MAIL FROM:<{}>", t.from)).await?;
    c.expect("MAIL FROM", &[250]).await?;
    let mut refused = Vec::new();
    for rcpt in &t.to {
        c.send(&format!("RCPT TO:<{rcpt}>")).await?;
        if let Err(f) = c.expect(&format!("RCPT TO {rcpt}"), &[250, 251]).await {
            refused.push(f);
        }
    }
    if refused.len() == t.to.len() {
        let _ = c.send("QUIT").await;
        let retryable = refused.iter().all(|f| f.retryable);
        let message = refused.into_iter().map(|f| f.message).collect::<Vec<_>>();
        return Err(Failure {
            message: message.join("; "),
            retryable,
        });
    }
    c.send("DATA").await?;
    c.expect("DATA", &[354]).await?;
    c.io.get_mut()
        .write_all(data.as_bytes())
        .await
        .map_err(|e| Failure::transient(format!("write to the server: {e}")))?;
    c.expect("the end of DATA", &[250]).await?;
    if c.send("QUIT").await.is_ok() {
        let _ = c.reply().await;
    }
    Ok(match refused.is_empty() {
        true => None,
        false => Some(
            refused
                .into_iter()
                .map(|f| f.message)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    })
}

#[cfg(test)]
mod tests;
