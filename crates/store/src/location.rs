//! [`StoreLocation`]: a store URL parsed once, where it enters (config load, `--store`), and
//! passed down typed; nothing below re-parses the string.

use crate::{Store, StoreError, StoreKind, StoreOptions};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Where a store lives: a local folder, or a bucket and prefix on an S3-compatible service.
///
/// Parsed from `file:///path`, a plain (possibly relative) folder path, or
/// `s3://bucket/prefix` (`"…".parse()`). A URL never carries credentials or settings: user
/// information (`s3://key:secret@bucket`) and query strings (`?…`) are refused, so that
/// [`Display`](fmt::Display), which manifests, reports and messages show, cannot leak a
/// secret. The endpoint and region are not part of the URL: they come with the
/// [`StoreOptions`] (`[store] endpoint`/`region`, else the `AWS_*` variables), and
/// [`StoreLocation::endpoint`] / [`StoreLocation::region`] resolve them as
/// [`StoreLocation::open`] does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StoreLocation {
    /// A local folder (created on open when missing).
    Folder { path: PathBuf },
    /// A bucket and a prefix (no leading or trailing `/`; empty for the bucket's root).
    S3 { bucket: String, prefix: String },
}

impl StoreLocation {
    /// Parses a store URL; the same as `raw.parse()`.
    pub fn parse(raw: &str) -> Result<StoreLocation, StoreError> {
        raw.parse()
    }

    /// Which backend the location needs.
    pub fn kind(&self) -> StoreKind {
        match self {
            StoreLocation::Folder { .. } => StoreKind::Local,
            StoreLocation::S3 { .. } => StoreKind::S3,
        }
    }

    /// The folder of a local store.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            StoreLocation::Folder { path } => Some(path),
            StoreLocation::S3 { .. } => None,
        }
    }

    /// The bucket of an S3 store.
    pub fn bucket(&self) -> Option<&str> {
        match self {
            StoreLocation::S3 { bucket, .. } => Some(bucket),
            StoreLocation::Folder { .. } => None,
        }
    }

    /// The prefix inside the bucket of an S3 store (`""` for the bucket's root).
    pub fn prefix(&self) -> Option<&str> {
        match self {
            StoreLocation::S3 { prefix, .. } => Some(prefix),
            StoreLocation::Folder { .. } => None,
        }
    }

    /// The endpoint an S3 store is reached at with `opts` (`None`: AWS S3 itself, or a
    /// folder). As written: it may hold user information; [`StoreLocation::open`] keeps it
    /// out of what it shows.
    pub fn endpoint(&self, opts: &StoreOptions) -> Option<String> {
        match self {
            StoreLocation::S3 { .. } => opts.resolved_endpoint(),
            StoreLocation::Folder { .. } => None,
        }
    }

    /// The region an S3 store is signed for with `opts` (`None` for a folder).
    pub fn region(&self, opts: &StoreOptions) -> Option<String> {
        match self {
            StoreLocation::S3 { .. } => Some(opts.resolved_region(opts.resolved_endpoint())),
            StoreLocation::Folder { .. } => None,
        }
    }

    /// A relative folder taken relative to `base` (the config file's folder); anything else
    /// unchanged.
    pub fn relative_to(self, base: &Path) -> StoreLocation {
        match self {
            StoreLocation::Folder { path } if path.is_relative() => StoreLocation::Folder {
                path: base.join(path),
            },
            other => other,
        }
    }

    /// Opens the store: see [`Store::open`].
    pub fn open(&self, opts: &StoreOptions) -> Result<Store, StoreError> {
        Store::open(self, opts)
    }
}

impl FromStr for StoreLocation {
    type Err = StoreError;

    fn from_str(raw: &str) -> Result<StoreLocation, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: redact_store_url(raw),
            reason: reason.to_string(),
        };
        let raw_trim = raw.trim();
        if raw_trim.is_empty() {
            return Err(bad(
                "it is empty; give a folder path, file:///path or s3://bucket/prefix",
            ));
        }
        if let Some(rest) = raw_trim.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("it names no bucket (s3://bucket/prefix)"));
            }
            if bucket.contains('@') || bucket.contains(':') {
                return Err(bad("credentials do not belong in the store URL; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or access_key_id_env in the config"));
            }
            if rest.contains('?') {
                return Err(bad("a store URL takes no query string; set endpoint, region and credentials in [store] (or the AWS_* variables)"));
            }
            return Ok(StoreLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(rest) = raw_trim.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad(
                    "file URLs must be absolute (file:///var/backups/pgdrill)",
                ));
            }
            return Ok(StoreLocation::Folder { path: rest.into() });
        }
        if raw_trim.contains("://") {
            return Err(bad(
                "only file:// and s3:// (any S3-compatible service) are supported",
            ));
        }
        Ok(StoreLocation::Folder {
            path: raw_trim.into(),
        })
    }
}

/// `s3://bucket/prefix`, `file:///absolute/folder` or a relative folder as given: a URL that
/// parses back to the same location, and holds no credentials (parsing refused them).
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Folder { path } if path.is_absolute() => {
                write!(f, "file://{}", path.display())
            }
            StoreLocation::Folder { path } => write!(f, "{}", path.display()),
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            StoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// A store URL as it may be shown before it parsed: user information (`key:secret@`) and the
/// query removed.
pub fn redact_store_url(raw: &str) -> String {
    let raw = raw.trim();
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.split(['?', '@']).next().unwrap_or("").to_string();
    };
    let rest = rest.split('?').next().unwrap_or("");
    let rest = match rest.rsplit_once('@') {
        Some((_, after)) => format!("***@{after}"),
        None => rest.to_string(),
    };
    format!("{scheme}://{rest}")
}

/// `https://user:pw@host:9000/x` → `https://host:9000/x`: an endpoint as it may be shown.
pub(crate) fn without_userinfo(endpoint: &str) -> String {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), endpoint),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() {
        format!("{scheme}{host}")
    } else {
        format!("{scheme}{host}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> StoreLocation {
        StoreLocation::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn parses_store_urls() {
        assert_eq!(
            "s3://b/some/prefix/".parse::<StoreLocation>().ok(),
            Some(s3("b", "some/prefix"))
        );
        let folder = |p: &str| StoreLocation::Folder { path: p.into() };
        assert_eq!(
            StoreLocation::parse("file:///var/x").ok(),
            Some(folder("/var/x"))
        );
        assert_eq!(StoreLocation::parse("./rel").ok(), Some(folder("./rel")));
        assert!(StoreLocation::parse("gs://x").is_err());
        assert!(StoreLocation::parse("s3://key:secret@bucket/x").is_err());
        assert!(StoreLocation::parse("").is_err());
    }

    #[test]
    fn display_parses_back_and_never_shows_credentials() {
        for raw in ["s3://b", "s3://b/p/q", "file:///var/bk", "rel/dir", "/abs"] {
            let loc = StoreLocation::parse(raw).expect(raw);
            let shown = loc.to_string();
            assert_eq!(
                StoreLocation::parse(&shown).ok(),
                Some(loc),
                "{raw} → {shown}"
            );
        }
        for raw in [
            "s3://AKIDCANARY:s3cr3tCANARY@b/p",
            "s3://b/p?secret=s3cr3tCANARY",
            "s3://b?X-Amz-Signature=s3cr3tCANARY",
            "https://u:s3cr3tCANARY@h/p",
        ] {
            let e = StoreLocation::parse(raw).expect_err(raw);
            assert!(matches!(e, StoreError::BadUrl { .. }), "{raw}: {e:?}");
            let said = format!("{e} {e:?}");
            assert!(!said.contains("s3cr3tCANARY"), "{said}");
        }
    }

    #[test]
    fn endpoint_and_region_resolve_like_open() {
        let opts = |env: &[(&str, &str)]| StoreOptions {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let loc = s3("b", "p");
        assert_eq!(loc.endpoint(&opts(&[])), None);
        assert_eq!(loc.region(&opts(&[])).as_deref(), Some("us-east-1"));
        let custom = opts(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")]);
        assert_eq!(
            loc.endpoint(&custom).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(loc.region(&custom).as_deref(), Some("auto"));
        let named = StoreOptions {
            endpoint: Some("https://r2.example".into()),
            region: Some("weur".into()),
            ..custom
        };
        assert_eq!(loc.endpoint(&named).as_deref(), Some("https://r2.example"));
        assert_eq!(loc.region(&named).as_deref(), Some("weur"));
        let folder = StoreLocation::parse("/x").expect("folder");
        assert_eq!(
            (folder.endpoint(&named), folder.region(&named)),
            (None, None)
        );
    }

    #[test]
    fn endpoints_are_shown_without_user_information() {
        assert_eq!(without_userinfo("https://u:p@h:9000/x"), "https://h:9000/x");
        assert_eq!(without_userinfo("http://h"), "http://h");
        assert_eq!(without_userinfo("h:9000"), "h:9000");
        assert_eq!(without_userinfo("https://h/?token=x"), "https://h");
    }

    #[test]
    fn relative_folders_resolve_against_a_base() {
        let base = Path::new("/etc/pgdrill");
        let rel = StoreLocation::parse("backups").expect("rel");
        assert_eq!(
            rel.relative_to(base).folder(),
            Some(Path::new("/etc/pgdrill/backups"))
        );
        for keep in ["/var/bk", "file:///var/bk", "s3://b/p"] {
            let loc = StoreLocation::parse(keep).expect(keep);
            assert_eq!(loc.clone().relative_to(base), loc);
        }
    }
}
