//! The little DER and PEM this plugin reads: the account's public key (SubjectPublicKeyInfo),
//! the keystore's ECDSA signatures, and the issuer name of a certificate. A full ASN.1 stack
//! would triple the component for these three shapes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
/// `[0]` EXPLICIT, the version of a TBSCertificate.
const CONTEXT_0: u8 = 0xa0;

/// id-ecPublicKey, 1.2.840.10045.2.1.
const ID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1, 1.2.840.10045.3.1.7.
const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Reads consecutive DER elements (tag, contents) from a buffer.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next element: its tag (single-byte tags only) and contents.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.data.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, rest) = rest.split_at(count);
            (bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)), rest)
        };
        if rest.len() < length {
            return None;
        }
        let (contents, rest) = rest.split_at(length);
        self.data = rest;
        Some((tag, contents))
    }

    /// The next element, which must have `tag`.
    fn take(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, contents) if t == tag => Some(contents),
            _ => None,
        }
    }
}

/// An account public key, as a JWK needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// P-256: the affine coordinates, 32 bytes each.
    P256 { x: Vec<u8>, y: Vec<u8> },
    /// RSA: modulus and public exponent, unsigned big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// Reads a DER SubjectPublicKeyInfo holding a P-256 or an RSA key.
pub(crate) fn public_key(spki: &[u8]) -> Result<PublicKey, String> {
    let malformed = || "the keystore returned a public key that is not DER SubjectPublicKeyInfo".to_string();
    let mut outer = Reader::new(spki);
    let mut info = Reader::new(outer.take(SEQUENCE).ok_or_else(malformed)?);
    let mut algorithm = Reader::new(info.take(SEQUENCE).ok_or_else(malformed)?);
    let oid = algorithm.take(OID).ok_or_else(malformed)?;
    let bits = info.take(BIT_STRING).ok_or_else(malformed)?;
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(malformed()),
    };
    if oid == ID_EC_PUBLIC_KEY {
        if algorithm.take(OID) != Some(PRIME256V1) {
            return Err("the account key is an EC key on a curve other than P-256".into());
        }
        return match key {
            [0x04, point @ ..] if point.len() == 64 => Ok(PublicKey::P256 {
                x: point[..32].to_vec(),
                y: point[32..].to_vec(),
            }),
            _ => Err("the account key's P-256 point is not uncompressed".into()),
        };
    }
    if oid == RSA_ENCRYPTION {
        let mut rsa = Reader::new(Reader::new(key).take(SEQUENCE).ok_or_else(malformed)?);
        let n = rsa.take(INTEGER).ok_or_else(malformed)?;
        let e = rsa.take(INTEGER).ok_or_else(malformed)?;
        return Ok(PublicKey::Rsa {
            n: unsigned(n).to_vec(),
            e: unsigned(e).to_vec(),
        });
    }
    Err("the account key is neither ECDSA P-256 nor RSA".into())
}

/// An INTEGER's contents without the leading zero bytes of its sign.
fn unsigned(integer: &[u8]) -> &[u8] {
    let start = integer.iter().position(|&b| b != 0).unwrap_or(integer.len());
    &integer[start..]
}

/// A DER ECDSA signature (SEQUENCE of INTEGER r, s) as JWS wants it: r || s, each left-padded to
/// `size` bytes (RFC 7518 §3.4).
pub(crate) fn ecdsa_raw(der: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let malformed = || "the keystore returned an ECDSA signature that is not DER".to_string();
    let mut outer = Reader::new(der);
    let mut pair = Reader::new(outer.take(SEQUENCE).ok_or_else(malformed)?);
    let mut raw = Vec::with_capacity(2 * size);
    for _ in 0..2 {
        let value = unsigned(pair.take(INTEGER).ok_or_else(malformed)?);
        if value.len() > size {
            return Err(malformed());
        }
        raw.resize(raw.len() + size - value.len(), 0);
        raw.extend_from_slice(value);
    }
    if !pair.is_empty() || !outer.is_empty() {
        return Err(malformed());
    }
    Ok(raw)
}

/// The first commonName of a certificate's issuer, if it has one.
pub(crate) fn issuer_common_name(certificate: &[u8]) -> Option<String> {
    let mut outer = Reader::new(certificate);
    let mut certificate = Reader::new(outer.take(SEQUENCE)?);
    let mut tbs = Reader::new(certificate.take(SEQUENCE)?);
    let (mut tag, _) = tbs.next()?;
    if tag == CONTEXT_0 {
        (tag, _) = tbs.next()?; // the serial number
    }
    if tag != INTEGER {
        return None;
    }
    tbs.take(SEQUENCE)?; // the signature algorithm
    let mut issuer = Reader::new(tbs.take(SEQUENCE)?);
    while let Some(rdn) = issuer.take(SET) {
        let mut rdn = Reader::new(rdn);
        while let Some(attribute) = rdn.take(SEQUENCE) {
            let mut attribute = Reader::new(attribute);
            if attribute.take(OID) == Some(COMMON_NAME) {
                let (tag, value) = attribute.next()?;
                return directory_string(tag, value);
            }
        }
    }
    None
}

/// A DirectoryString: UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1)
/// or BMPString.
fn directory_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 => String::from_utf8(value.to_vec()).ok(),
        0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// The DER contents of the PEM blocks labelled `label` (`CERTIFICATE`), in order. A block that
/// is not base64 is an error.
pub(crate) fn pem_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let body_start = start + begin.len();
        let Some(stop) = rest[body_start..].find(&end) else {
            return Err(format!("a {label} PEM block has no END line"));
        };
        let body: String = rest[body_start..body_start + stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        blocks.push(
            STANDARD
                .decode(body)
                .map_err(|e| format!("a {label} PEM block is not base64: {e}"))?,
        );
        rest = &rest[body_start + stop + end.len()..];
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_become_fixed_width() {
        // r has a sign byte (33 bytes), s is short (30 bytes): both come out as 32.
        let mut r = vec![0x00, 0x80];
        r.extend([0x11; 31]);
        let s = vec![0x7f; 30];
        let mut der = vec![SEQUENCE, (2 + r.len() + 2 + s.len()) as u8, INTEGER, r.len() as u8];
        der.extend(&r);
        der.extend([INTEGER, s.len() as u8]);
        der.extend(&s);
        let raw = ecdsa_raw(&der, 32).expect("converts");
        assert_eq!(raw.len(), 64);
        assert_eq!(&raw[..32], &r[1..]);
        assert_eq!(&raw[32..34], &[0, 0]);
        assert_eq!(&raw[34..], &s[..]);

        assert!(ecdsa_raw(&der[..der.len() - 1], 32).is_err(), "truncated");
        let mut long = der.clone();
        long.push(0);
        assert!(ecdsa_raw(&long, 32).is_err(), "trailing bytes");
        let mut too_big = vec![SEQUENCE, 38, INTEGER, 33];
        too_big.extend([0x7f; 33]);
        too_big.extend([INTEGER, 1, 1]);
        assert!(ecdsa_raw(&too_big, 32).is_err(), "r wider than the curve");
    }

    #[test]
    fn long_form_lengths_are_read() {
        let mut der = vec![0x04, 0x82, 0x01, 0x00];
        der.extend([7; 256]);
        let mut reader = Reader::new(&der);
        let (tag, contents) = reader.next().expect("element");
        assert_eq!((tag, contents.len()), (0x04, 256));
        assert!(reader.is_empty());
        assert!(Reader::new(&[0x04, 0x80]).next().is_none(), "indefinite length");
        assert!(Reader::new(&[0x04, 0x05, 1]).next().is_none(), "short");
    }

    #[test]
    fn pem_blocks_are_decoded_in_order() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\r\nBAUG\r\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_blocks(text, "CERTIFICATE").expect("pem"),
            [vec![1, 2, 3], vec![4, 5, 6]]
        );
        assert!(
            pem_blocks(
                "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----",
                "CERTIFICATE"
            )
            .is_err()
        );
        assert!(pem_blocks("-----BEGIN CERTIFICATE-----\nAQID\n", "CERTIFICATE").is_err());
        assert!(pem_blocks("nothing", "CERTIFICATE").expect("none").is_empty());
    }

    #[test]
    fn directory_strings() {
        assert_eq!(directory_string(0x13, b"Root X1").as_deref(), Some("Root X1"));
        assert_eq!(directory_string(0x1e, &[0, b'R', 0, b'1']).as_deref(), Some("R1"));
        assert_eq!(directory_string(0x14, &[0xe9]).as_deref(), Some("é"));
        assert_eq!(directory_string(0x04, b"x"), None);
    }
}
