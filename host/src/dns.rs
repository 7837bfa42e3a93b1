//! A small DNS client for the challenge broker: SOA (zone of a name), NS and A/AAAA (the
//! authoritative servers), TXT (propagation). One question per query over UDP with EDNS0, TCP
//! when the answer is truncated. Only what dns-01 needs; no caching, no DNSSEC. The same
//! transport ([`exchange`]) carries plugins' own messages for `host-dns`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const A: u16 = 1;
pub const NS: u16 = 2;
pub const CNAME: u16 = 5;
pub const SOA: u16 = 6;
pub const TXT: u16 = 16;
pub const AAAA: u16 = 28;

/// A record of an answer or authority section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Ip(IpAddr),
    /// NS target, SOA primary server.
    Name(String),
    /// The strings of one TXT record, concatenated.
    Txt(String),
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Lower case, no trailing dot.
    pub name: String,
    pub rtype: u16,
    pub data: Data,
}

#[derive(Debug, Clone, Default)]
pub struct Response {
    /// 0 NOERROR, 3 NXDOMAIN, ...
    pub rcode: u8,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
}

fn encode_query(id: u16, name: &str, rtype: u16, recursion: bool) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&(if recursion { 0x0100u16 } else { 0 }).to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]); // 1 question, 1 additional (OPT)
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        if label.len() > 63 {
            return Err(format!("label {label:?} of {name} is longer than 63 bytes"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&rtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    // EDNS0 OPT: root name, type 41, UDP payload 4096, no flags, no options.
    q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    Ok(q)
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, String> {
        let b = *self.msg.get(self.pos).ok_or("truncated DNS message")?;
        self.pos += 1;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from(self.u16()?) << 16 | u32::from(self.u16()?))
    }

    /// A possibly compressed name at the current position.
    fn name(&mut self) -> Result<String, String> {
        let (name, end) = name_at(self.msg, self.pos)?;
        self.pos = end;
        Ok(name)
    }
}

/// Reads a name at `pos`, following compression pointers (at most 64 hops); returns the name
/// and the position after it in the original stream.
fn name_at(msg: &[u8], mut pos: usize) -> Result<(String, usize), String> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(pos).ok_or("truncated name")? as usize;
        if len == 0 {
            return Ok((labels.join(".").to_ascii_lowercase(), end.unwrap_or(pos + 1)));
        }
        if len & 0xC0 == 0xC0 {
            let low = *msg.get(pos + 1).ok_or("truncated pointer")? as usize;
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3F) << 8) | low;
            continue;
        }
        let label = msg.get(pos + 1..pos + 1 + len).ok_or("truncated label")?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + len;
    }
    Err("DNS name compression loop".to_string())
}

fn parse(msg: &[u8], id: u16) -> Result<Response, String> {
    let mut r = Reader { msg, pos: 0 };
    if r.u16()? != id {
        return Err("answer to another query (id mismatch)".into());
    }
    let flags = r.u16()?;
    let (qd, an, ns, _ar) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
    for _ in 0..qd {
        r.name()?;
        r.u32()?;
    }
    let record = |r: &mut Reader| -> Result<Record, String> {
        let name = r.name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        let _ttl = r.u32()?;
        let len = r.u16()? as usize;
        let start = r.pos;
        let rdata = msg.get(start..start + len).ok_or("truncated record data")?;
        let data = match rtype {
            A if len == 4 => Data::Ip(IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]))),
            AAAA if len == 16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                Data::Ip(IpAddr::V6(Ipv6Addr::from(b)))
            }
            NS | SOA | CNAME => Data::Name(name_at(msg, start)?.0),
            TXT => {
                let mut text = String::new();
                let mut i = 0;
                while i < rdata.len() {
                    let n = rdata[i] as usize;
                    let s = rdata.get(i + 1..i + 1 + n).ok_or("truncated TXT string")?;
                    text.push_str(&String::from_utf8_lossy(s));
                    i += 1 + n;
                }
                Data::Txt(text)
            }
            _ => Data::Other,
        };
        r.pos = start + len;
        Ok(Record { name, rtype, data })
    };
    let mut resp = Response {
        rcode: (flags & 0x000F) as u8,
        ..Response::default()
    };
    for _ in 0..an {
        resp.answers.push(record(&mut r)?);
    }
    for _ in 0..ns {
        resp.authority.push(record(&mut r)?);
    }
    Ok(resp)
}

/// Asks `server` one question. `recursion`: set RD (for resolvers); off for authoritative
/// servers. UDP first, TCP when truncated; each leg bounded by `timeout`.
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: u16,
    recursion: bool,
    timeout: Duration,
) -> Result<Response, String> {
    let id: u16 = rand::random();
    let q = encode_query(id, name, rtype, recursion)?;
    let answer = exchange(server, &q, false, timeout)
        .await
        .map_err(|e| format!("asking {server} for {name}: {e}"))?;
    parse(&answer, id)
}

/// Sends a complete DNS message to `server` and returns the response with the same id: over
/// UDP (retried over TCP when truncated) or over TCP. For plugins' `host-dns`.
pub async fn exchange(server: SocketAddr, message: &[u8], tcp: bool, timeout: Duration) -> Result<Vec<u8>, String> {
    if message.len() < 12 || message.len() > 65_535 {
        return Err(format!(
            "a DNS message is 12 to 65535 bytes, this one {}",
            message.len()
        ));
    }
    let id = [message[0], message[1]];
    if !tcp {
        let udp = async {
            let bind: SocketAddr = if server.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = tokio::net::UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
            sock.connect(server).await.map_err(|e| e.to_string())?;
            sock.send(message).await.map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 65_535];
            loop {
                let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
                if n >= 12 && buf[..2] == id {
                    buf.truncate(n);
                    return Ok::<Vec<u8>, String>(buf);
                }
            }
        };
        let answer = tokio::time::timeout(timeout, udp)
            .await
            .map_err(|_| format!("{server} did not answer within {timeout:?}"))??;
        if answer[2] & 0x02 == 0 {
            return Ok(answer);
        }
    }
    let tcp = async {
        let mut stream = tokio::net::TcpStream::connect(server)
            .await
            .map_err(|e| e.to_string())?;
        let mut framed = (message.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(message);
        stream.write_all(&framed).await.map_err(|e| e.to_string())?;
        let len = stream.read_u16().await.map_err(|e| e.to_string())? as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<Vec<u8>, String>(buf)
    };
    tokio::time::timeout(timeout, tcp)
        .await
        .map_err(|_| format!("{server} did not answer over TCP within {timeout:?}"))?
}

/// The resolvers of `/etc/resolv.conf` (port 53), or an error saying to configure some.
pub fn system_resolvers() -> Result<Vec<SocketAddr>, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("cannot read /etc/resolv.conf ({e}): set CERTCTL_DNS_RESOLVERS"))?;
    let servers: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() {
        return Err("no nameserver in /etc/resolv.conf: set CERTCTL_DNS_RESOLVERS".into());
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_names_and_edns() {
        let q = encode_query(0x1234, "_acme-challenge.example.com.", TXT, false).expect("query");
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(q[2] & 0x01, 0, "no recursion desired");
        assert!(q.windows(16).any(|w| w == b"\x0f_acme-challenge"));
        assert!(encode_query(1, &"a".repeat(64), A, true).is_err());
    }

    #[test]
    fn compressed_names_and_loops() {
        // header (12 bytes) then "example.com" at 12, then a pointer to it.
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(b"\x07example\x03com\x00");
        msg.extend_from_slice(b"\x03www\xc0\x0c");
        assert_eq!(name_at(&msg, 25).expect("name"), ("www.example.com".to_string(), 31));
        let looped = [0xc0, 0x00];
        assert!(name_at(&looped, 0).is_err());
    }
}
