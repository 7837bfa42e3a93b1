//! For DNS solvers: reading TXT record content as provider APIs return it, and sending DNS
//! messages through the host ([`exchange`], for solvers that speak the DNS protocol, such as
//! RFC 2136 dynamic updates).

use crate::PluginError;

/// How [`exchange`] sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP; the host retries over TCP when the answer is truncated.
    Udp,
    /// TCP (length-prefixed).
    Tcp,
}

/// Sends one complete DNS message (an UPDATE signed with TSIG, a query) to `server` (`HOST:PORT`,
/// `HOST` for port 53, `[v6]:PORT`) through the host, and returns the response. The operator
/// grants the server as `dns://HOST[:PORT]` in the plugin's `outbound_hosts` (plus
/// `allow_private_networks` for a private address); anything else is [`PluginError::Auth`].
/// No answer in time is [`PluginError::Transient`].
///
/// Natively (unit tests) a `certctl_sdk::testkit::MockDns` installed on the thread answers.
pub fn exchange(server: &str, message: &[u8], transport: Transport) -> Result<Vec<u8>, PluginError> {
    #[cfg(all(target_arch = "wasm32", feature = "dns-solver"))]
    {
        use crate::bindings::dns_solver::certctl::plugin::host_dns::{self as h, Transport as T};
        let t = match transport {
            Transport::Udp => T::Udp,
            Transport::Tcp => T::Tcp,
        };
        h::exchange(server, message, t).map_err(Into::into)
    }
    #[cfg(all(target_arch = "wasm32", not(feature = "dns-solver")))]
    {
        let _ = (server, message, transport);
        Err(PluginError::permanent(
            "dns::exchange is for DNS-solver plugins (feature dns-solver)",
        ))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testkit::dns_exchange(server, message, transport).unwrap_or_else(|| {
            Err(PluginError::permanent(
                "this host service needs a certctl host: not running as a WebAssembly component (install a testkit::MockDns)",
            ))
        })
    }
}

/// The text of TXT record content in zone-file (presentation) format, which is how most DNS APIs
/// return TXT records: one or more quoted character-strings, joined (`"abc" "def"` is `abcdef`;
/// a long value comes back split into strings of 255 bytes), with `\"`, `\\` and `\DDD` (a
/// decimal byte: `"caf\195\169"` is `café`) unescaped. `None` when `content` is not in that
/// format (a bare value, an unterminated string, a `\DDD` over 255).
///
/// Compare the result with the challenge value's bytes to find the record that holds it,
/// whichever way the provider split or escaped it:
///
/// ```
/// use certctl_sdk::dns::unquote_txt;
///
/// assert_eq!(unquote_txt(r#""tok" "en""#).as_deref(), Some(&b"token"[..]));
/// assert_eq!(unquote_txt(r#""say \"hi\"""#).as_deref(), Some(&br#"say "hi""#[..]));
/// assert_eq!(unquote_txt("token"), None);
/// ```
pub fn unquote_txt(content: &str) -> Option<Vec<u8>> {
    let mut text = Vec::with_capacity(content.len());
    let mut bytes = content.bytes().peekable();
    loop {
        while bytes.next_if(u8::is_ascii_whitespace).is_some() {}
        match bytes.next() {
            None => return Some(text),
            Some(b'"') => {}
            Some(_) => return None,
        }
        loop {
            match bytes.next()? {
                b'"' => break,
                b'\\' => {
                    let escaped = bytes.next()?;
                    if escaped.is_ascii_digit() {
                        let mut code = u32::from(escaped - b'0');
                        for _ in 0..2 {
                            let digit = bytes.next().filter(u8::is_ascii_digit)?;
                            code = code * 10 + u32::from(digit - b'0');
                        }
                        text.push(u8::try_from(code).ok()?);
                    } else {
                        text.push(escaped);
                    }
                }
                byte => text.push(byte),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_are_joined_and_unescaped() {
        assert_eq!(unquote_txt(r#""token""#).as_deref(), Some(&b"token"[..]));
        assert_eq!(unquote_txt(r#""a" "b""#).as_deref(), Some(&b"ab"[..]));
        assert_eq!(unquote_txt(r#" "a"  "b c" "#).as_deref(), Some(&b"ab c"[..]));
        assert_eq!(
            unquote_txt(r#""say \"hi\" \\ bye""#).as_deref(),
            Some(&br#"say "hi" \ bye"#[..])
        );
        assert_eq!(
            unquote_txt(r#""caf\195\169\010""#).as_deref(),
            Some("café\n".as_bytes())
        );
        assert_eq!(unquote_txt(r#""""#).as_deref(), Some(&b""[..]));
        assert_eq!(unquote_txt("").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn other_forms_are_not_read() {
        for bad in ["token", r#""open"#, r#""a" b"#, r#""\1""#, r#""\256""#, r#""trailing\"#] {
            assert_eq!(unquote_txt(bad), None, "{bad}");
        }
    }
}
