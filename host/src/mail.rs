//! SMTP delivery for notifier plugins (`host-mail`). The plugin composes the message; the host
//! owns the relay, its credentials, TLS and the sender address (`CERTCTL_SMTP_*`).
//!
//! A small client on purpose: one message per connection, `EHLO`, then TLS (implicit on 465,
//! `STARTTLS` otherwise, never silently skipped), `AUTH PLAIN` only over TLS, `MAIL FROM`,
//! `RCPT TO`, `DATA` with dot-stuffing, `QUIT`. Bodies are base64 so long lines and UTF-8 pass
//! any relay.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plugins::PluginFailure;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with `STARTTLS` (port 587); refused if the relay does not offer it.
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS at all: only for a relay on the same host. Credentials are then refused.
    None,
}

impl SmtpTls {
    pub fn parse(s: &str) -> Option<SmtpTls> {
        match s {
            "starttls" => Some(SmtpTls::StartTls),
            "implicit" | "tls" => Some(SmtpTls::Implicit),
            "none" => Some(SmtpTls::None),
            _ => None,
        }
    }
}

/// The relay, from `CERTCTL_SMTP_*`.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub tls: SmtpTls,
    /// Extra CA certificates to trust (a private relay).
    pub ca_bundle: Option<PathBuf>,
    pub timeout: Duration,
}

/// One message, as a plugin composed it.
#[derive(Debug, Clone)]
pub struct Message {
    pub to: Vec<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: Option<String>,
}

/// Sends messages through the configured relay.
pub struct Mailer {
    settings: SmtpSettings,
    tls: Arc<rustls::ClientConfig>,
}

/// A plain address: one `@`, something on both sides, no spaces, brackets or control characters.
pub fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.contains('@')
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '<' | '>' | ',' | ';' | '"'))
}

fn transient(context: &str, e: impl std::fmt::Display) -> PluginFailure {
    PluginFailure::Transient(format!("SMTP {context}: {e}"))
}

/// A reply: the code and its text lines joined.
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn failure(&self, during: &str) -> PluginFailure {
        let message = format!("the relay answered {} to {during}: {}", self.code, self.text);
        match self.code {
            530 | 534 | 535 | 538 => PluginFailure::Auth(message),
            400..=499 => PluginFailure::Transient(message),
            _ => PluginFailure::Permanent(message),
        }
    }
}

/// A connection with the bytes read past the last reply.
struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn reply(&mut self) -> Result<Reply, PluginFailure> {
        let mut text = Vec::new();
        loop {
            let line = loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                    break String::from_utf8_lossy(&line[..pos]).into_owned();
                }
                if self.buf.len() > 64 * 1024 {
                    return Err(PluginFailure::Transient("SMTP reply line too long".into()));
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.map_err(|e| transient("read", e))?;
                if n == 0 {
                    return Err(PluginFailure::Transient("the relay closed the connection".into()));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            };
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| PluginFailure::Transient(format!("not an SMTP reply: {line:?}")))?;
            text.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply {
                    code,
                    text: text.join(" "),
                });
            }
        }
    }

    /// Writes and flushes (a TLS stream holds data until flushed).
    async fn write(&mut self, data: &[u8]) -> Result<(), PluginFailure> {
        self.stream.write_all(data).await.map_err(|e| transient("write", e))?;
        self.stream.flush().await.map_err(|e| transient("write", e))
    }

    async fn command(&mut self, line: &str, expect: u16, during: &str) -> Result<Reply, PluginFailure> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        let reply = self.reply().await?;
        if reply.code != expect {
            return Err(reply.failure(during));
        }
        Ok(reply)
    }
}

impl Mailer {
    pub fn new(settings: SmtpSettings) -> anyhow::Result<Mailer> {
        let tls = crate::plugins::http::client_tls(settings.ca_bundle.as_deref())?;
        Ok(Mailer {
            settings,
            tls: Arc::new(tls),
        })
    }

    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// Sends one message; errors are typed as the plugin contract describes.
    pub async fn send(&self, message: &Message) -> Result<(), PluginFailure> {
        if message.to.is_empty() || message.to.len() > 50 {
            return Err(PluginFailure::InvalidConfig(
                "a message needs 1 to 50 recipients".into(),
            ));
        }
        if let Some(bad) = message.to.iter().find(|a| !is_address(a)) {
            return Err(PluginFailure::InvalidConfig(format!(
                "{bad:?} is not an e-mail address"
            )));
        }
        if message.subject.contains(['\r', '\n']) {
            return Err(PluginFailure::Permanent("the subject must be one line".into()));
        }
        tokio::time::timeout(self.settings.timeout, self.deliver(message))
            .await
            .map_err(|_| {
                PluginFailure::Transient(format!(
                    "SMTP delivery to {}:{} did not finish within {:?}",
                    self.settings.host, self.settings.port, self.settings.timeout
                ))
            })?
    }

    async fn deliver(&self, message: &Message) -> Result<(), PluginFailure> {
        let s = &self.settings;
        let tcp = TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(|e| transient(&format!("connect to {}:{}", s.host, s.port), e))?;
        match s.tls {
            SmtpTls::Implicit => {
                let tls = self.handshake(tcp).await?;
                let mut conn = Conn {
                    stream: tls,
                    buf: Vec::new(),
                };
                expect_greeting(&mut conn).await?;
                conn.command("EHLO certctl", 250, "EHLO").await?;
                self.transaction(&mut conn, message, true).await
            }
            SmtpTls::StartTls => {
                let mut plain = Conn {
                    stream: tcp,
                    buf: Vec::new(),
                };
                expect_greeting(&mut plain).await?;
                let ehlo = plain.command("EHLO certctl", 250, "EHLO").await?;
                if !ehlo.text.to_ascii_uppercase().contains("STARTTLS") {
                    return Err(PluginFailure::Permanent(format!(
                        "{}:{} does not offer STARTTLS; set CERTCTL_SMTP_TLS=implicit for a TLS port (465), \
                         or none only for a relay on this host",
                        s.host, s.port
                    )));
                }
                plain.command("STARTTLS", 220, "STARTTLS").await?;
                if !plain.buf.is_empty() {
                    return Err(PluginFailure::Permanent(
                        "the relay sent data before the TLS handshake (refused: possible injection)".into(),
                    ));
                }
                let tls = self.handshake(plain.stream).await?;
                let mut conn = Conn {
                    stream: tls,
                    buf: Vec::new(),
                };
                conn.command("EHLO certctl", 250, "EHLO").await?;
                self.transaction(&mut conn, message, true).await
            }
            SmtpTls::None => {
                let mut conn = Conn {
                    stream: tcp,
                    buf: Vec::new(),
                };
                expect_greeting(&mut conn).await?;
                conn.command("EHLO certctl", 250, "EHLO").await?;
                self.transaction(&mut conn, message, false).await
            }
        }
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, PluginFailure> {
        let name = rustls::pki_types::ServerName::try_from(self.settings.host.clone())
            .map_err(|e| PluginFailure::InvalidConfig(format!("CERTCTL_SMTP_HOST: {e}")))?;
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| transient("TLS handshake", e))
    }

    async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Conn<S>,
        message: &Message,
        encrypted: bool,
    ) -> Result<(), PluginFailure> {
        let s = &self.settings;
        if let (Some(user), Some(password)) = (&s.username, &s.password) {
            if !encrypted {
                return Err(PluginFailure::InvalidConfig(
                    "refusing to send SMTP credentials without TLS (CERTCTL_SMTP_TLS=none)".into(),
                ));
            }
            let token = B64.encode(format!("\0{user}\0{password}"));
            conn.command(&format!("AUTH PLAIN {token}"), 235, "AUTH").await?;
        }
        conn.command(&format!("MAIL FROM:<{}>", s.from), 250, "MAIL FROM")
            .await?;
        for to in &message.to {
            conn.write(format!("RCPT TO:<{to}>\r\n").as_bytes()).await?;
            let reply = conn.reply().await?;
            if reply.code != 250 && reply.code != 251 {
                return Err(reply.failure(&format!("RCPT TO {to}")));
            }
        }
        conn.command("DATA", 354, "DATA").await?;
        let data = compose(&s.from, message);
        conn.write(dot_stuff(&data).as_bytes()).await?;
        conn.command(".", 250, "the message").await?;
        // The message is accepted; a failed QUIT changes nothing.
        let _ = conn.command("QUIT", 221, "QUIT").await;
        Ok(())
    }
}

async fn expect_greeting<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>) -> Result<(), PluginFailure> {
    let greeting = conn.reply().await?;
    if greeting.code != 220 {
        return Err(greeting.failure("the connection"));
    }
    Ok(())
}

/// An RFC 2047 encoded word when the text is not plain ASCII.
fn header_text(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        s.to_string()
    } else {
        format!("=?UTF-8?B?{}?=", B64.encode(s))
    }
}

/// Base64 in lines of 76 characters.
fn base64_lines(body: &str) -> String {
    let encoded = B64.encode(body);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 38);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

/// The message with its headers, CRLF line ends, ending in CRLF.
pub fn compose(from: &str, m: &Message) -> String {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let domain = from.rsplit_once('@').map_or("certctl", |(_, d)| d);
    let mut out = format!(
        "From: {from}\r\nTo: {}\r\nSubject: {}\r\nDate: {date}\r\nMessage-ID: <{}@{domain}>\r\nMIME-Version: 1.0\r\n",
        m.to.join(", "),
        header_text(&m.subject),
        uuid::Uuid::now_v7(),
    );
    let part = |content_type: &str, body: &str| {
        format!(
            "Content-Type: {content_type}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            base64_lines(body)
        )
    };
    match &m.html_body {
        None => out.push_str(&part("text/plain", &m.text_body)),
        Some(html) => {
            let boundary = format!("certctl-{}", uuid::Uuid::now_v7().simple());
            out.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n{}--{boundary}\r\n{}--{boundary}--\r\n",
                part("text/plain", &m.text_body),
                part("text/html", html)
            ));
        }
    }
    out
}

/// Doubles a leading dot on every line and appends the end-of-data line.
fn dot_stuff(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 8);
    for line in data.split_inclusive("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(is_address("ops@example.com"));
        assert!(!is_address("ops"));
        assert!(!is_address("a@b@example.com"));
        assert!(!is_address("ops@example.com>\r\nRCPT TO:<x@y.z"));
        assert!(!is_address("ops @example.com"));
        assert!(!is_address("ops@localhost"));
    }

    #[test]
    fn non_ascii_subjects_are_encoded_and_bodies_are_base64() {
        let m = Message {
            to: vec!["a@example.com".into()],
            subject: "Zertifikat läuft ab".into(),
            text_body: ".leading dot\nline".into(),
            html_body: Some("<p>x</p>".into()),
        };
        let text = compose("certctl@example.com", &m);
        assert!(text.contains("Subject: =?UTF-8?B?"), "{text}");
        assert!(text.contains("multipart/alternative"));
        assert!(text.ends_with("--\r\n"));
        assert!(!text.contains("leading dot"), "bodies are encoded");
    }

    #[test]
    fn dots_are_stuffed() {
        assert_eq!(dot_stuff("a\r\n.b\r\n"), "a\r\n..b\r\n");
    }

    #[test]
    fn reply_codes_map_to_contract_errors() {
        let r = |code| Reply { code, text: "x".into() };
        assert!(matches!(r(535).failure("AUTH"), PluginFailure::Auth(_)));
        assert!(matches!(r(451).failure("DATA"), PluginFailure::Transient(_)));
        assert!(matches!(r(550).failure("RCPT"), PluginFailure::Permanent(_)));
    }
}
