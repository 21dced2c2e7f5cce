use crate::s3_uploads::S3Uploads;
use crate::{CopyCheck, Store, StoreError, StoreKind, StoreLocation};
use object_store::aws::{AmazonS3Builder, Checksum, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// How to reach an S3-compatible service. Unset fields fall back to the standard `AWS_*`
/// environment variables.
#[derive(Clone, Default)]
pub struct StoreOptions {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing (`https://endpoint/bucket/key`); MinIO and most S3-compatible
    /// services want it; AWS S3 and R2 accept virtual-host style too.
    pub path_style: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Environment to read `AWS_*` variables from (tests inject their own).
    pub env: Vec<(String, String)>,
    /// Bound on one request, from connecting to the last byte of the answer
    /// ([`DEFAULT_TIMEOUT`] when unset). A request that stalls longer is abandoned and, if it
    /// is safe to repeat, retried.
    pub timeout: Option<Duration>,
    /// How long a failing request keeps being retried, with exponential backoff and jitter
    /// ([`DEFAULT_RETRY_WINDOW`] when unset), e.g. while the server restarts.
    pub retry_window: Option<Duration>,
    /// How each copy written to an S3 store is checked (`checksum`); `None`: the provider's
    /// safe default ([`CopyCheck::default_for`]). A folder always re-reads.
    pub checksum: Option<CopyCheck>,
}

/// Default bound on one store request (a part upload of 16 MiB needs about 280 KB/s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a failing store request is retried for.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(30);

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("checksum", &self.checksum)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "***"))
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl StoreOptions {
    fn env_var(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    }

    /// The S3 endpoint: `endpoint`, else `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT`; `None` means AWS S3 itself.
    pub(crate) fn resolved_endpoint(&self) -> Option<String> {
        self.endpoint
            .clone()
            .or_else(|| self.env_var("AWS_ENDPOINT_URL"))
            .or_else(|| self.env_var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| self.env_var("AWS_ENDPOINT"))
    }

    /// The signing region: `region`, else `AWS_REGION`, `AWS_DEFAULT_REGION`, else `auto` at
    /// a custom endpoint and `us-east-1` at AWS.
    pub(crate) fn resolved_region(&self, endpoint: Option<String>) -> String {
        self.region
            .clone()
            .or_else(|| self.env_var("AWS_REGION"))
            .or_else(|| self.env_var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| {
                if endpoint.is_some() {
                    "auto".into()
                } else {
                    "us-east-1".into()
                }
            })
    }
}

impl Store {
    /// Opens the store at `location`. Creates a local folder if missing; does no network call
    /// for S3 (use `doctor` for a round trip).
    pub fn open(location: &StoreLocation, opts: &StoreOptions) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Folder { path } => open_local(location, path),
            StoreLocation::S3 { bucket, prefix } => open_s3(bucket, prefix, opts),
        }
    }

    /// A store in a local folder (created when missing), the same as [`Store::open`] of a
    /// [`StoreLocation::Folder`].
    pub fn open_folder(path: impl Into<std::path::PathBuf>) -> Result<Store, StoreError> {
        Store::open(
            &StoreLocation::Folder { path: path.into() },
            &StoreOptions::default(),
        )
    }
}

fn open_local(location: &StoreLocation, path: &std::path::Path) -> Result<Store, StoreError> {
    let url = location.to_string();
    std::fs::create_dir_all(path).map_err(|e| StoreError::BadUrl {
        url: url.clone(),
        reason: format!("cannot create folder {}: {e}", path.display()),
    })?;
    let fs = LocalFileSystem::new_with_prefix(path)
        .map_err(|e| StoreError::BadUrl {
            url,
            reason: e.to_string(),
        })?
        // Deleting the last object of a folder removes the folder, as on object stores.
        .with_automatic_cleanup(true);
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Store {
        inner: Arc::new(fs),
        prefix: None,
        display: format!("file://{}", abs.display()),
        kind: StoreKind::Local,
        local_root: Some(abs),
        bucket: None,
        s3: None,
        health: Default::default(),
        check: CopyCheck::Reread,
    })
}

fn open_s3(bucket: &str, prefix: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
    let timeout = opts.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(retry_config(
            opts.retry_window.unwrap_or(DEFAULT_RETRY_WINDOW),
        ));
    let endpoint = opts.resolved_endpoint();
    let check = opts
        .checksum
        .unwrap_or_else(|| CopyCheck::default_for(endpoint.as_deref()));
    if check == CopyCheck::Sha256 {
        b = b.with_checksum_algorithm(Checksum::SHA256);
    }
    let mut client = ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(timeout.min(Duration::from_secs(15)));
    if let Some(ep) = &endpoint {
        if ep.starts_with("http://") {
            client = client.with_allow_http(true);
        }
        b = b.with_endpoint(ep.trim_end_matches('/'));
    }
    b = b.with_client_options(client);
    let region = opts.resolved_region(endpoint.clone());
    b = b.with_region(region.clone());
    // Custom endpoints (MinIO, R2, B2, OCI) default to path style; AWS itself to virtual host.
    let path_style = opts.path_style.unwrap_or(endpoint.is_some());
    b = b.with_virtual_hosted_style_request(!path_style);
    let key = opts
        .access_key_id
        .clone()
        .or_else(|| opts.env_var("AWS_ACCESS_KEY_ID"));
    let secret = opts
        .secret_access_key
        .clone()
        .or_else(|| opts.env_var("AWS_SECRET_ACCESS_KEY"));
    match (key, secret) {
        (Some(k), Some(s)) => {
            b = b.with_access_key_id(k).with_secret_access_key(s);
            let token = opts
                .session_token
                .clone()
                .or_else(|| opts.env_var("AWS_SESSION_TOKEN"));
            if let Some(t) = token {
                b = b.with_token(t);
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(StoreError::BadUrl {
                url: format!("s3://{bucket}/{prefix}"),
                reason: "only one of the access key id and the secret access key is set; set both"
                    .into(),
            })
        }
        (None, None) => {}
    }
    let s3 = b.build().map_err(|e| StoreError::BadUrl {
        url: format!("s3://{bucket}/{prefix}"),
        reason: e.to_string(),
    })?;
    let uploads = S3Uploads {
        client: reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .build()
            .map_err(|e| StoreError::BadUrl {
                url: format!("s3://{bucket}/{prefix}"),
                reason: format!("cannot set up the HTTP client: {e}"),
            })?,
        bucket_url: bucket_url(bucket, endpoint.as_deref(), &region, path_style).map_err(
            |reason| StoreError::BadUrl {
                url: format!("s3://{bucket}/{prefix}"),
                reason,
            },
        )?,
        region: region.clone(),
        credentials: s3.credentials().clone(),
        retry_window: opts.retry_window.unwrap_or(DEFAULT_RETRY_WINDOW),
    };
    let inner: Arc<dyn ObjectStore> = Arc::new(s3);
    let prefix_path = if prefix.is_empty() {
        None
    } else {
        Some(Path::parse(prefix).map_err(|e| StoreError::BadUrl {
            url: format!("s3://{bucket}/{prefix}"),
            reason: e.to_string(),
        })?)
    };
    // What messages show: an endpoint written with user information loses it.
    let shown_endpoint = endpoint.as_deref().map(crate::location::without_userinfo);
    let display = match &shown_endpoint {
        Some(ep) => format!("s3://{bucket}/{prefix} at {ep}"),
        None => format!("s3://{bucket}/{prefix}"),
    };
    let at = shown_endpoint.unwrap_or_else(|| format!("AWS S3 (region {region})"));
    Ok(Store {
        inner,
        prefix: prefix_path,
        display,
        kind: StoreKind::S3,
        local_root: None,
        bucket: Some((bucket.to_string(), at)),
        s3: Some(Arc::new(uploads)),
        health: Default::default(),
        check,
    })
}

/// The bucket's URL as `object_store` builds it: a custom endpoint is the bucket's own host in
/// virtual-hosted style, and gets `/<bucket>` appended in path style.
fn bucket_url(
    bucket: &str,
    endpoint: Option<&str>,
    region: &str,
    path_style: bool,
) -> Result<url::Url, String> {
    let raw = match (endpoint.map(|e| e.trim_end_matches('/')), path_style) {
        (Some(ep), false) => ep.to_string(),
        (Some(ep), true) => format!("{ep}/{bucket}"),
        (None, false) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, true) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    };
    let url =
        url::Url::parse(&raw).map_err(|e| format!("the endpoint {raw:?} is not a URL: {e}"))?;
    if url.host_str().is_none() {
        return Err(format!("the endpoint {raw:?} names no host"));
    }
    Ok(url)
}

/// Retries bounded by time rather than by count: backoff from 250 ms doubling up to 8 s,
/// each sleep drawn at random below its bound (jitter, so that several clients do not retry
/// in step), until `window` has passed since the first attempt. Timeouts are retried only for
/// requests that are safe to repeat (GET, HEAD, LIST, PUT of a whole object or part).
fn retry_config(window: Duration) -> RetryConfig {
    RetryConfig {
        max_retries: 1_000,
        retry_timeout: window,
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            base: 2.0,
        },
    }
}
