//! The S3 multipart uploads other processes left open (a killed backup's): listed with
//! `ListMultipartUploads` and aborted with `AbortMultipartUpload`, which `object_store` 0.12
//! does not expose. Requests are signed here ([`crate::sigv4`]) with the credentials
//! `object_store` resolved for the store, at the bucket URL it uses.
//!
//! Both requests are safe to repeat (an abort of an upload already gone answers
//! `NoSuchUpload`, taken as done), so transport failures, 5xx and 429 answers are retried with
//! backoff until the store's retry window has passed.

use crate::sigv4;
use object_store::aws::AwsCredentialProvider;
use std::time::{Duration, Instant};

/// How to reach one bucket's multipart uploads. `Debug` shows the bucket URL only.
pub(crate) struct S3Uploads {
    pub(crate) client: reqwest::Client,
    /// The bucket's URL without a trailing `/`: `<endpoint>/<bucket>` (path style) or
    /// `https://<bucket>.<host>` (virtual-hosted).
    pub(crate) bucket_url: url::Url,
    pub(crate) region: String,
    pub(crate) credentials: AwsCredentialProvider,
    pub(crate) retry_window: Duration,
}

impl std::fmt::Debug for S3Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Uploads")
            .field("bucket_url", &self.bucket_url.as_str())
            .finish()
    }
}

/// One open multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OpenUpload {
    /// The full object key in the bucket.
    pub key: String,
    pub upload_id: String,
    /// Seconds since the Unix epoch, by the store's clock.
    pub initiated: i64,
}

/// A non-2xx answer, worded as `object_store` words its own (the store's error messages read
/// the status and the S3 error code from that text).
#[derive(Debug)]
struct Status(String);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Status {}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: Box::new(e),
    }
}

impl S3Uploads {
    /// Every open upload whose key starts with `prefix` (a full key prefix in the bucket).
    pub(crate) async fn list(&self, prefix: &str) -> object_store::Result<Vec<OpenUpload>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        loop {
            let mut query = vec![("uploads", ""), ("prefix", prefix)];
            if !key_marker.is_empty() {
                query.push(("key-marker", &key_marker));
                query.push(("upload-id-marker", &id_marker));
            }
            let body = self.send("GET", None, &query).await?;
            let page = parse_list(&body)?;
            out.extend(page.uploads);
            match page.next {
                Some((k, i)) if (k.as_str(), i.as_str()) != (&key_marker, &id_marker) => {
                    (key_marker, id_marker) = (k, i);
                }
                _ => return Ok(out),
            }
        }
    }

    /// Aborts one upload; an upload already gone is not an error.
    pub(crate) async fn abort(&self, key: &str, upload_id: &str) -> object_store::Result<()> {
        match self
            .send("DELETE", Some(key), &[("uploadId", upload_id)])
            .await
        {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Sends one signed request (retried while it fails for a reason that may pass) and
    /// returns the answer's body.
    async fn send(
        &self,
        method: &'static str,
        key: Option<&str>,
        query: &[(&str, &str)],
    ) -> object_store::Result<String> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(250);
        loop {
            let (retry, result) = match self.send_once(method, key, query).await {
                Ok((status, body)) if status.is_success() => return Ok(body),
                Ok((status, body)) => (
                    status.is_server_error() || status.as_u16() == 429,
                    Err(status_error(status, body, key)),
                ),
                Err(e) => (
                    e.is_timeout() || e.is_connect() || e.is_request(),
                    Err(generic(e)),
                ),
            };
            let left = self.retry_window.saturating_sub(started.elapsed());
            if !retry || left.is_zero() {
                return result;
            }
            tokio::time::sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(Duration::from_secs(8));
        }
    }

    async fn send_once(
        &self,
        method: &'static str,
        key: Option<&str>,
        query: &[(&str, &str)],
    ) -> Result<(reqwest::StatusCode, String), reqwest::Error> {
        let base = self.bucket_url.path().trim_end_matches('/');
        let path = match key {
            Some(k) => format!("{base}/{}", sigv4::uri_encode(k, false)),
            None if base.is_empty() => "/".to_string(),
            None => base.to_string(),
        };
        let host = match self.bucket_url.port() {
            Some(p) => format!("{}:{p}", self.bucket_url.host_str().unwrap_or("")),
            None => self.bucket_url.host_str().unwrap_or("").to_string(),
        };
        // Sent as `?uploads&prefix=…` (a bare name where the value is empty, as S3 clients
        // send it); signed in canonical form.
        let sent_query: Vec<String> = query
            .iter()
            .map(|(k, v)| match v.is_empty() {
                true => sigv4::uri_encode(k, true),
                false => format!(
                    "{}={}",
                    sigv4::uri_encode(k, true),
                    sigv4::uri_encode(v, true)
                ),
            })
            .collect();
        let url = format!(
            "{}://{host}{path}?{}",
            self.bucket_url.scheme(),
            sent_query.join("&")
        );
        let amz_date = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let mut request = match method {
            "DELETE" => self.client.delete(&url),
            _ => self.client.get(&url),
        };
        // Credentials are looked up per request (they may be temporary and refreshed).
        let headers = match self.credentials.get_credential().await {
            Ok(c) => sigv4::sign(
                &sigv4::Request {
                    method,
                    host: &host,
                    path: &path,
                    query,
                    amz_date: &amz_date,
                    region: &self.region,
                    payload_sha256: sigv4::EMPTY_SHA256,
                },
                &sigv4::Credential {
                    key_id: &c.key_id,
                    secret: &c.secret_key,
                    token: c.token.as_deref(),
                },
            ),
            // No credential to be had: send it unsigned, the store answers what it thinks.
            Err(_) => Vec::new(),
        };
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        let status = response.status();
        Ok((status, response.text().await?))
    }
}

fn status_error(
    status: reqwest::StatusCode,
    body: String,
    key: Option<&str>,
) -> object_store::Error {
    let path = key.unwrap_or("").to_string();
    let code = xml_tag(&body, "Code").unwrap_or_default();
    let text = Status(format!(
        "Server returned non-2xx status code: {status}: {}",
        body.trim()
    ));
    match status.as_u16() {
        404 if code == "NoSuchUpload" => object_store::Error::NotFound {
            path,
            source: Box::new(text),
        },
        401 | 403 => object_store::Error::PermissionDenied {
            path,
            source: Box::new(text),
        },
        // A service without the call (not worth retrying).
        501 => object_store::Error::NotSupported {
            source: Box::new(text),
        },
        _ => generic(text),
    }
}

struct Page {
    uploads: Vec<OpenUpload>,
    /// The markers of the next page, when the listing was truncated.
    next: Option<(String, String)>,
}

fn parse_list(body: &str) -> object_store::Result<Page> {
    if !body.contains("<ListMultipartUploadsResult") {
        return Err(generic(Status(format!(
            "the answer to ListMultipartUploads is not a listing: {:.200}",
            body.trim()
        ))));
    }
    let mut uploads = Vec::new();
    for part in body.split("<Upload>").skip(1) {
        let part = part.split("</Upload>").next().unwrap_or(part);
        let (Some(key), Some(upload_id)) = (xml_tag(part, "Key"), xml_tag(part, "UploadId")) else {
            continue;
        };
        let initiated = xml_tag(part, "Initiated")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(0, |t| t.as_second());
        uploads.push(OpenUpload {
            key,
            upload_id,
            initiated,
        });
    }
    // The page's own markers come before the first upload; the uploads hold none of these.
    let head = body.split("<Upload>").next().unwrap_or(body);
    let truncated = xml_tag(head, "IsTruncated").is_some_and(|t| t == "true")
        || body
            .rsplit("</Upload>")
            .next()
            .and_then(|tail| xml_tag(tail, "IsTruncated"))
            .is_some_and(|t| t == "true");
    let next = truncated.then(|| {
        let find = |name| {
            xml_tag(head, name)
                .or_else(|| {
                    body.rsplit("</Upload>")
                        .next()
                        .and_then(|t| xml_tag(t, name))
                })
                .unwrap_or_default()
        };
        (find("NextKeyMarker"), find("NextUploadIdMarker"))
    });
    Ok(Page {
        uploads,
        next: next.filter(|(k, _)| !k.is_empty()),
    })
}

/// The unescaped text of the first `<name>…</name>` in `xml`.
fn xml_tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_truncated_listing() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/b&amp;c</NextKeyMarker><NextUploadIdMarker>id-2</NextUploadIdMarker>
  <Prefix>p/</Prefix><MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/a</Key><UploadId>id-1</UploadId>
    <Initiator><ID>x</ID><DisplayName>y</DisplayName></Initiator>
    <Initiated>2024-01-02T03:04:05.000Z</Initiated></Upload>
  <Upload><Key>p/b&amp;c</Key><UploadId>id-2</UploadId>
    <Initiated>2024-01-02T03:04:06Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page = parse_list(body).expect("parse");
        assert_eq!(
            page.uploads,
            [
                OpenUpload {
                    key: "p/a".into(),
                    upload_id: "id-1".into(),
                    initiated: 1_704_164_645
                },
                OpenUpload {
                    key: "p/b&c".into(),
                    upload_id: "id-2".into(),
                    initiated: 1_704_164_646
                }
            ]
        );
        assert_eq!(page.next, Some(("p/b&c".into(), "id-2".into())));
        let last = body.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(parse_list(&last).expect("parse").next, None);
        assert!(parse_list("<html>proxy error</html>").is_err());
    }
}
