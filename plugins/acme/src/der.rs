//! The little DER and PEM this plugin reads: the account's public key (SubjectPublicKeyInfo),
//! the keystore's ECDSA signatures, and of a certificate its issuer name, serial number and
//! Authority Key Identifier. A full ASN.1 stack would triple the component for these shapes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
/// `[0]` EXPLICIT, the version of a TBSCertificate.
const CONTEXT_0: u8 = 0xa0;
/// `[3]` EXPLICIT, the extensions of a TBSCertificate.
const CONTEXT_3: u8 = 0xa3;
/// `[0]` IMPLICIT OCTET STRING, the keyIdentifier of an AuthorityKeyIdentifier.
const KEY_IDENTIFIER: u8 = 0x80;

/// id-ecPublicKey, 1.2.840.10045.2.1.
const ID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1, 1.2.840.10045.3.1.7.
const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// authorityKeyIdentifier, 2.5.29.35.
const AUTHORITY_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 0x23];

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

/// A certificate's TBSCertificate, read up to its issuer.
struct Tbs<'a> {
    /// The serial number's contents octets (a leading 0x00 of a positive number included).
    serial: &'a [u8],
    /// The issuer Name's contents.
    issuer: &'a [u8],
    /// The rest, from the validity on.
    rest: Reader<'a>,
}

fn tbs(certificate: &[u8]) -> Option<Tbs<'_>> {
    let mut outer = Reader::new(certificate);
    let mut certificate = Reader::new(outer.take(SEQUENCE)?);
    let mut tbs = Reader::new(certificate.take(SEQUENCE)?);
    let (mut tag, mut serial) = tbs.next()?;
    if tag == CONTEXT_0 {
        (tag, serial) = tbs.next()?; // after the version
    }
    if tag != INTEGER {
        return None;
    }
    tbs.take(SEQUENCE)?; // the signature algorithm
    let issuer = tbs.take(SEQUENCE)?;
    Some(Tbs {
        serial,
        issuer,
        rest: tbs,
    })
}

/// What ACME Renewal Information names a certificate by (RFC 9773 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AriParts<'a> {
    /// The keyIdentifier of the Authority Key Identifier extension; `None` when the certificate
    /// has no such extension, or one without a keyIdentifier.
    pub(crate) key_identifier: Option<&'a [u8]>,
    /// The serial number's DER contents octets, a leading 0x00 included.
    pub(crate) serial: &'a [u8],
}

/// The AKI keyIdentifier and serial number of a DER certificate; `None` when it is not one.
pub(crate) fn ari_parts(certificate: &[u8]) -> Option<AriParts<'_>> {
    let Tbs { serial, mut rest, .. } = tbs(certificate)?;
    rest.take(SEQUENCE)?; // validity
    rest.take(SEQUENCE)?; // subject
    rest.take(SEQUENCE)?; // subjectPublicKeyInfo
    // Then issuerUniqueID [1] and subjectUniqueID [2] (rare), and the extensions [3] (v3).
    let mut key_identifier = None;
    while let Some((tag, contents)) = rest.next() {
        if tag != CONTEXT_3 {
            continue;
        }
        let mut extensions = Reader::new(Reader::new(contents).take(SEQUENCE)?);
        while !extensions.is_empty() {
            let mut extension = Reader::new(extensions.take(SEQUENCE)?);
            let oid = extension.take(OID)?;
            let (mut tag, mut value) = extension.next()?;
            if tag == BOOLEAN {
                (tag, value) = extension.next()?; // after `critical`
            }
            if tag != OCTET_STRING {
                return None;
            }
            if oid == AUTHORITY_KEY_IDENTIFIER {
                key_identifier = authority_key_identifier(value);
                break;
            }
        }
    }
    Some(AriParts { key_identifier, serial })
}

/// The keyIdentifier of a DER AuthorityKeyIdentifier, if it has one.
fn authority_key_identifier(aki: &[u8]) -> Option<&[u8]> {
    let mut fields = Reader::new(Reader::new(aki).take(SEQUENCE)?);
    while let Some((tag, contents)) = fields.next() {
        if tag == KEY_IDENTIFIER {
            return Some(contents);
        }
    }
    None
}

/// The first commonName of a certificate's issuer, if it has one.
pub(crate) fn issuer_common_name(certificate: &[u8]) -> Option<String> {
    let mut issuer = Reader::new(tbs(certificate)?.issuer);
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

    /// A DER element (lengths below 128 only).
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut der = vec![tag, u8::try_from(contents.len()).expect("short")];
        der.extend(contents);
        der
    }

    /// A certificate, as far as this module reads it: the version if `version`, `serial`, and
    /// the extensions if any; the rest is empty.
    fn certificate(version: bool, serial: &[u8], extensions: Option<Vec<u8>>) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(CONTEXT_0, &tlv(INTEGER, &[2])));
        }
        tbs.extend(tlv(INTEGER, serial));
        tbs.extend(tlv(
            SEQUENCE,
            &tlv(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        ));
        let cn = tlv(SEQUENCE, &[tlv(OID, COMMON_NAME), tlv(0x13, b"Test CA")].concat());
        tbs.extend(tlv(SEQUENCE, &tlv(SET, &cn))); // issuer
        tbs.extend(tlv(SEQUENCE, &[])); // validity
        tbs.extend(tlv(SEQUENCE, &[])); // subject
        tbs.extend(tlv(SEQUENCE, &[])); // subjectPublicKeyInfo
        if let Some(extensions) = extensions {
            tbs.extend(tlv(CONTEXT_3, &tlv(SEQUENCE, &extensions)));
        }
        let signature = tlv(SEQUENCE, &tlv(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
        tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), signature, tlv(BIT_STRING, &[0])].concat(),
        )
    }

    fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
        let mut fields = tlv(OID, oid);
        if critical {
            fields.extend(tlv(BOOLEAN, &[0xff]));
        }
        fields.extend(tlv(OCTET_STRING, value));
        tlv(SEQUENCE, &fields)
    }

    #[test]
    fn the_rfc_9773_example_certificate() {
        let der = pem_blocks(crate::tests::RFC_9773_CERTIFICATE, "CERTIFICATE")
            .expect("pem")
            .remove(0);
        let parts = ari_parts(&der).expect("a certificate");
        assert_eq!(
            parts.key_identifier,
            Some(
                &[
                    0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C,
                    0xDE, 0x01, 0xC8, 0xD4
                ][..]
            )
        );
        assert_eq!(parts.serial, [0x00, 0x87, 0x65, 0x43, 0x21], "the sign byte stays");
        assert_eq!(issuer_common_name(&der).as_deref(), Some("Example CA"));
    }

    #[test]
    fn authority_key_identifiers_are_found_among_extensions() {
        let key_id = [7u8; 20];
        let aki = tlv(SEQUENCE, &tlv(KEY_IDENTIFIER, &key_id));
        // basicConstraints (critical) first, then the AKI.
        let extensions = [
            extension(&[0x55, 0x1d, 0x13], true, &tlv(SEQUENCE, &[])),
            extension(AUTHORITY_KEY_IDENTIFIER, false, &aki),
        ]
        .concat();
        let der = certificate(true, &[0x2a], Some(extensions));
        assert_eq!(
            ari_parts(&der),
            Some(AriParts {
                key_identifier: Some(&key_id[..]),
                serial: &[0x2a]
            })
        );
        assert_eq!(issuer_common_name(&der).as_deref(), Some("Test CA"));

        // A v1 certificate has no extensions; an AKI may name the issuer's issuer and serial
        // instead of a key identifier.
        let v1 = certificate(false, &[0x01, 0x00], None);
        assert_eq!(
            ari_parts(&v1),
            Some(AriParts {
                key_identifier: None,
                serial: &[0x01, 0x00]
            })
        );
        let by_issuer = tlv(SEQUENCE, &tlv(0x82, &[5]));
        let der = certificate(
            true,
            &[0x2a],
            Some(extension(AUTHORITY_KEY_IDENTIFIER, false, &by_issuer)),
        );
        assert_eq!(ari_parts(&der).expect("certificate").key_identifier, None);

        assert_eq!(ari_parts(b"not DER"), None);
        let mut truncated = certificate(true, &[0x2a], None);
        truncated.truncate(truncated.len() - 3);
        assert_eq!(ari_parts(&truncated), None);
        let garbled = certificate(true, &[0x2a], Some(tlv(SEQUENCE, &tlv(OID, AUTHORITY_KEY_IDENTIFIER))));
        assert_eq!(ari_parts(&garbled), None, "an extension without a value");
    }

    #[test]
    fn directory_strings() {
        assert_eq!(directory_string(0x13, b"Root X1").as_deref(), Some("Root X1"));
        assert_eq!(directory_string(0x1e, &[0, b'R', 0, b'1']).as_deref(), Some("R1"));
        assert_eq!(directory_string(0x14, &[0xe9]).as_deref(), Some("é"));
        assert_eq!(directory_string(0x04, b"x"), None);
    }
}
