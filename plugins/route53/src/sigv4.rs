//! AWS Signature Version 4, as Route 53 wants it: a canonical request (method, path, sorted
//! query, signed headers, SHA-256 of the body), a string to sign for the credential scope
//! `DATE/REGION/SERVICE/aws4_request`, and its HMAC-SHA256 under a key derived from the secret
//! access key, sent as `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
//! Signature=...`.

use std::fmt::Write as _;

use certctl_sdk::PluginError;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Who signs.
pub(crate) struct Credentials<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a str,
}

/// What is signed.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// The path as sent, its segments percent-encoded already (they are encoded once more here,
    /// as SigV4 wants for every service but S3).
    pub(crate) path: &'a str,
    /// The canonical query string: pairs encoded with [`encode`] and sorted, as [`query`]
    /// makes it (send the URL with exactly this query).
    pub(crate) query: &'a str,
    /// Every signed header, `host` and `x-amz-date` among them, names in any case.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
}

/// The `Authorization` header for `request`, signed at `amz_date` (`20150830T123600Z`, the
/// request's `x-amz-date`) for `region` and `service`.
pub(crate) fn authorization(
    request: &Request<'_>,
    credentials: &Credentials<'_>,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Result<String, PluginError> {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let (canonical, signed_headers) = canonical_request(request);
    let to_sign = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(credentials.secret_access_key, date, region, service)?;
    let signature = hex(&hmac(&key, to_sign.as_bytes())?);
    Ok(format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    ))
}

/// The canonical request and its signed-headers list (`host;x-amz-date`).
fn canonical_request(request: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut canonical = format!(
        "{}\n{}\n{}\n",
        request.method,
        canonical_uri(request.path),
        request.query
    );
    for (name, value) in &headers {
        let _ = writeln!(canonical, "{name}:{value}");
    }
    let _ = write!(canonical, "\n{signed_headers}\n{}", hex(&Sha256::digest(request.body)));
    (canonical, signed_headers)
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Result<Vec<u8>, PluginError> {
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes())?;
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes())?;
    }
    Ok(key)
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, PluginError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|e| PluginError::permanent(format!("cannot sign the request: HMAC-SHA256: {e}")))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// Each segment of the path encoded (once more): `/` stays, `%` becomes `%25`.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// The canonical query string of `pairs`: names and values encoded with [`encode`], sorted by
/// name, then value.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 percent-encoding as SigV4 wants it: bytes other than letters, digits and `-._~`
/// as `%XX`, upper case.
pub(crate) fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// `20270115T080000Z` for seconds since the Unix epoch.
pub(crate) fn amz_date(unix_seconds: u64) -> String {
    certctl_sdk::time::rfc3339(unix_seconds).replace(['-', ':'], "")
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials of AWS's published SigV4 test suite.
    const EXAMPLE: Credentials<'static> = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    };
    const EXAMPLE_DATE: &str = "20150830T123600Z";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn vanilla(method: &'static str) -> Request<'static> {
        const HEADERS: &[(&str, &str)] = &[("Host", "example.amazonaws.com"), ("X-Amz-Date", EXAMPLE_DATE)];
        Request {
            method,
            path: "/",
            query: "",
            headers: HEADERS,
            body: b"",
        }
    }

    fn signature(authorization: &str) -> &str {
        authorization.rsplit_once("Signature=").map_or("", |(_, s)| s)
    }

    #[test]
    fn get_vanilla_from_the_aws_test_suite() {
        let request = vanilla("GET");
        let (canonical, signed) = canonical_request(&request);
        assert_eq!(
            canonical,
            format!(
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA256}"
            )
        );
        assert_eq!(signed, "host;x-amz-date");
        assert_eq!(
            string_to_sign(EXAMPLE_DATE, "20150830/us-east-1/service/aws4_request", &canonical),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            authorization(&request, &EXAMPLE, "us-east-1", "service", EXAMPLE_DATE),
            Ok(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                SignedHeaders=host;x-amz-date, \
                Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                    .into()
            )
        );
    }

    #[test]
    fn post_vanilla_and_query_order_from_the_aws_test_suite() {
        let sign = |request: &Request<'_>| {
            authorization(request, &EXAMPLE, "us-east-1", "service", EXAMPLE_DATE).expect("signs")
        };
        assert_eq!(
            signature(&sign(&vanilla("POST"))),
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        // get-vanilla-query-order-key-case: `?Param2=value2&Param1=value1`, sorted.
        let sorted = query(&[("Param2", "value2"), ("Param1", "value1")]);
        assert_eq!(sorted, "Param1=value1&Param2=value2");
        assert_eq!(
            signature(&sign(&Request {
                query: &sorted,
                ..vanilla("GET")
            })),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    /// Route 53 requests as the plugin sends them, against signatures botocore 1.43 computed
    /// for the same requests (`SigV4Auth(credentials, "route53", "us-east-1")`).
    #[test]
    fn route53_requests_sign_as_botocore_signs_them() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let date = "20270115T080000Z";
        assert_eq!(amz_date(1_800_000_000), date);

        let token = "FwoGZXIvYXdzEXAMPLE//session+token=";
        let list = Request {
            method: "GET",
            path: "/2013-04-01/hostedzone/Z1D633PJN98FT9/rrset",
            query: &query(&[
                ("name", "_acme-challenge.www.example.com."),
                ("type", "TXT"),
                ("maxitems", "1"),
            ]),
            headers: &[
                ("host", "route53.amazonaws.com"),
                ("x-amz-date", date),
                ("x-amz-security-token", token),
            ],
            body: b"",
        };
        assert_eq!(
            canonical_request(&list).0,
            format!(
                "GET\n/2013-04-01/hostedzone/Z1D633PJN98FT9/rrset\nmaxitems=1&name=_acme-challenge.www.example.com.&type=TXT\n\
                 host:route53.amazonaws.com\nx-amz-date:20270115T080000Z\nx-amz-security-token:{token}\n\n\
                 host;x-amz-date;x-amz-security-token\n{EMPTY_SHA256}"
            )
        );
        let session = Credentials {
            access_key_id: "ASIAIOSFODNN7EXAMPLE",
            secret_access_key: secret,
        };
        assert_eq!(
            authorization(&list, &session, "us-east-1", "route53", date),
            Ok(
                "AWS4-HMAC-SHA256 Credential=ASIAIOSFODNN7EXAMPLE/20270115/us-east-1/route53/aws4_request, \
                SignedHeaders=host;x-amz-date;x-amz-security-token, \
                Signature=6234a566d0a24980c17d96a2e6f1acb99ad64aae8c23e216c76f9bbd36b396e8"
                    .into()
            )
        );

        let long_term = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: secret,
        };
        let zones = Request {
            method: "GET",
            path: "/2013-04-01/hostedzonesbyname",
            query: &query(&[("dnsname", "example.com."), ("maxitems", "10")]),
            headers: &[("host", "route53.amazonaws.com"), ("x-amz-date", date)],
            body: b"",
        };
        assert_eq!(
            signature(&authorization(&zones, &long_term, "us-east-1", "route53", date).expect("signs")),
            "40c5b516ea0edc47a8991bc007a252b9304e567175e3d1c275b5f11a54f5246c"
        );

        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest \
                    xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeBatch><Changes><Change><Action>UPSERT\
                    </Action><ResourceRecordSet><Name>_acme-challenge.www.example.com.</Name><Type>TXT</Type><TTL>60\
                    </TTL><ResourceRecords><ResourceRecord><Value>\"token\"</Value></ResourceRecord></ResourceRecords>\
                    </ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>";
        let change = Request {
            method: "POST",
            path: "/2013-04-01/hostedzone/Z1D633PJN98FT9/rrset/",
            query: "",
            headers: &[("host", "127.0.0.1:5999"), ("x-amz-date", date)],
            body: body.as_bytes(),
        };
        assert!(
            canonical_request(&change)
                .0
                .ends_with("76725bd79bae45c3e32299427f8d8d29eb661344fade4e010e3056722af5f225")
        );
        assert_eq!(
            signature(&authorization(&change, &long_term, "us-east-1", "route53", date).expect("signs")),
            "81509aeddcd9fa4fbfae6a66adbff8907227d83593ee8d20fc1eff06071bc949"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_names_sorted_lower_case() {
        let request = Request {
            method: "GET",
            path: "",
            query: "",
            headers: &[
                ("X-Amz-Date", EXAMPLE_DATE),
                ("My-Header", "  a   b  c "),
                ("Host", "example.amazonaws.com"),
            ],
            body: b"",
        };
        let (canonical, signed) = canonical_request(&request);
        assert_eq!(signed, "host;my-header;x-amz-date");
        assert!(
            canonical
                .starts_with("GET\n/\n\nhost:example.amazonaws.com\nmy-header:a b c\nx-amz-date:20150830T123600Z\n\n"),
            "{canonical}"
        );
    }

    #[test]
    fn paths_and_queries_are_encoded_as_sigv4_wants() {
        assert_eq!(
            canonical_uri("/2013-04-01/change/C2682N5HXP0BZ4"),
            "/2013-04-01/change/C2682N5HXP0BZ4"
        );
        assert_eq!(canonical_uri("/a%20b/c"), "/a%2520b/c");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(encode("a b+c=d/é~"), "a%20b%2Bc%3Dd%2F%C3%A9~");
        assert_eq!(
            query(&[("name", "a b"), ("type", "TXT"), ("name", "a a")]),
            "name=a%20a&name=a%20b&type=TXT"
        );
        assert_eq!(query(&[]), "");
        assert_eq!(amz_date(0), "19700101T000000Z");
    }

    #[test]
    fn the_secret_changes_the_signature_and_never_appears() {
        let request = vanilla("GET");
        let other = Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "another-secret",
        };
        let header = authorization(&request, &other, "us-east-1", "service", EXAMPLE_DATE).expect("signs");
        assert_ne!(
            signature(&header),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert!(!header.contains("another-secret"));
    }
}
