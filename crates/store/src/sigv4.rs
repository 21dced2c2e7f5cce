//! AWS Signature Version 4 for the few S3 requests `object_store` does not make (listing and
//! aborting other processes' multipart uploads). Only header signing of requests without a
//! body (`GET`, `DELETE`): the payload hash is the empty body's.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// SHA-256 of the empty string, the payload hash of a request without a body.
pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What signs a request (deliberately without `Debug`: it holds the secret).
pub(crate) struct Credential<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
    pub token: Option<&'a str>,
}

/// One request to sign: `path` already URI-encoded (as sent), `query` as raw pairs.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// `host[:port]`, as the `Host` header will carry it.
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    /// `YYYYMMDDTHHMMSSZ`
    pub amz_date: &'a str,
    pub region: &'a str,
    pub payload_sha256: &'a str,
}

/// The headers to send besides `Host`: `x-amz-date`, `x-amz-content-sha256`, the session
/// token when there is one, and `authorization`.
pub(crate) fn sign(req: &Request<'_>, cred: &Credential<'_>) -> Vec<(&'static str, String)> {
    let mut headers: Vec<(&'static str, String)> = vec![
        ("host", req.host.to_string()),
        ("x-amz-content-sha256", req.payload_sha256.to_string()),
        ("x-amz-date", req.amz_date.to_string()),
    ];
    if let Some(t) = cred.token {
        headers.push(("x-amz-security-token", t.to_string()));
    }
    let auth = authorization(req, cred, &headers);
    headers.retain(|(k, _)| *k != "host");
    headers.push(("authorization", auth));
    headers
}

/// The `Authorization` header value for `req` with exactly `headers` signed (lowercase names,
/// sorted).
fn authorization(
    req: &Request<'_>,
    cred: &Credential<'_>,
    headers: &[(&'static str, String)],
) -> String {
    let mut headers = headers.to_vec();
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        req.method,
        req.path,
        canonical_query(req.query),
        req.payload_sha256
    );
    let date = req.amz_date.get(..8).unwrap_or(req.amz_date);
    let scope = format!("{date}/{}/s3/aws4_request", req.region);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        req.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{}", cred.secret).as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, req.region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        cred.key_id
    )
}

/// `a=1&b=&c=x%2Fy`: names and values URI-encoded, sorted by name then value.
pub(crate) fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters stay, everything else is `%XX`
/// (uppercase); `/` stays too unless `slash` is set (object keys in paths keep theirs).
pub(crate) fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example "GET Object" (Signature Version 4, authenticating requests
    /// with the Authorization header): bucket `examplebucket`, key `test.txt`, a range header,
    /// keys `AKIAIOSFODNN7EXAMPLE` / `wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`.
    const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn cred() -> Credential<'static> {
        Credential {
            key_id: KEY_ID,
            secret: SECRET,
            token: None,
        }
    }

    #[test]
    fn signs_the_aws_get_object_example() {
        let req = Request {
            method: "GET",
            host: "examplebucket.s3.amazonaws.com",
            path: "/test.txt",
            query: &[],
            amz_date: "20130524T000000Z",
            region: "us-east-1",
            payload_sha256: EMPTY_SHA256,
        };
        let headers = vec![
            ("host", req.host.to_string()),
            ("range", "bytes=0-9".to_string()),
            ("x-amz-content-sha256", EMPTY_SHA256.to_string()),
            ("x-amz-date", req.amz_date.to_string()),
        ];
        assert_eq!(
            authorization(&req, &cred(), &headers),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// AWS's example "GET Bucket Lifecycle" (a query parameter without a value) and "Get
    /// Bucket (List Objects)" (sorted, encoded query).
    #[test]
    fn signs_the_aws_examples_with_a_query() {
        let sign_get = |query: &[(&str, &str)]| {
            let req = Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/",
                query,
                amz_date: "20130524T000000Z",
                region: "us-east-1",
                payload_sha256: EMPTY_SHA256,
            };
            let auth = sign(&req, &cred())
                .into_iter()
                .find(|(k, _)| *k == "authorization")
                .map(|(_, v)| v)
                .unwrap_or_default();
            auth.rsplit("Signature=").next().unwrap_or("").to_string()
        };
        assert_eq!(
            sign_get(&[("lifecycle", "")]),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        assert_eq!(
            sign_get(&[("prefix", "J"), ("max-keys", "2")]),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn encodes_like_sigv4() {
        assert_eq!(uri_encode("a b/c~d*é", true), "a%20b%2Fc~d%2A%C3%A9");
        assert_eq!(uri_encode("p/k+1.bin", false), "p/k%2B1.bin");
        assert_eq!(
            canonical_query(&[("uploads", ""), ("prefix", "a/b"), ("key-marker", "")]),
            "key-marker=&prefix=a%2Fb&uploads="
        );
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let req = Request {
            method: "DELETE",
            host: "127.0.0.1:9000",
            path: "/b/k",
            query: &[("uploadId", "u1")],
            amz_date: "20240101T000000Z",
            region: "auto",
            payload_sha256: EMPTY_SHA256,
        };
        let c = Credential {
            token: Some("tok"),
            ..cred()
        };
        let headers = sign(&req, &c);
        assert!(headers.contains(&("x-amz-security-token", "tok".into())));
        let auth = &headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .expect("auth")
            .1;
        assert!(
            auth.contains(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
            ),
            "{auth}"
        );
        assert!(!auth.contains(SECRET));
    }
}
