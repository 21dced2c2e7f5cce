//! [`Place`]: a folder or bucket + prefix described without credentials, and whether two of
//! them overlap (the guards of `mirror run` and `mirror restore`).

use crate::{Error, Result};
use pgdrill_store::{StoreLocation, StoreOptions};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A location described without credentials, for manifests and overlap checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Place {
    /// An absolute folder path (symlinks in existing parts resolved).
    Folder { path: PathBuf },
    /// A bucket and prefix; `endpoint` is absent for AWS S3 itself.
    S3 {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        bucket: String,
        prefix: String,
    },
}

impl Place {
    /// Describes `location` as [`pgdrill_store::Store::open`] would reach it with `opts` (no
    /// network call).
    pub fn describe(location: &StoreLocation, opts: &StoreOptions) -> Result<Place> {
        match location {
            StoreLocation::Folder { path } => Ok(Place::Folder {
                path: absolute(path)?,
            }),
            StoreLocation::S3 { bucket, prefix } => Ok(Place::S3 {
                endpoint: location
                    .endpoint(opts)
                    .map(|e| strip_userinfo(e.trim_end_matches('/')).to_ascii_lowercase()),
                bucket: bucket.clone(),
                prefix: prefix.clone(),
            }),
        }
    }

    /// Whether one location contains the other (or they are the same). Endpoints compare as
    /// written, except that any `*.amazonaws.com` endpoint and none both mean AWS.
    pub fn overlaps(&self, other: &Place) -> bool {
        match (self, other) {
            (Place::Folder { path: a }, Place::Folder { path: b }) => {
                a.starts_with(b) || b.starts_with(a)
            }
            (
                Place::S3 {
                    endpoint: ea,
                    bucket: ba,
                    prefix: pa,
                },
                Place::S3 {
                    endpoint: eb,
                    bucket: bb,
                    prefix: pb,
                },
            ) => {
                let service = |e: &Option<String>| match e {
                    None => "aws".to_string(),
                    Some(e) if host_of(e).ends_with("amazonaws.com") => "aws".to_string(),
                    Some(e) => e.clone(),
                };
                let segs = |p: &str| -> Vec<String> {
                    p.split('/')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                };
                let (sa, sb) = (segs(pa), segs(pb));
                let n = sa.len().min(sb.len());
                service(ea) == service(eb) && ba == bb && sa[..n] == sb[..n]
            }
            _ => false,
        }
    }
}

/// `https://user:pw@host` → `https://host`: a Place is written into manifests.
fn strip_userinfo(endpoint: &str) -> String {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("", endpoint));
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut out = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    out.push_str(host);
    if !path.is_empty() {
        out.push('/');
        out.push_str(path);
    }
    out
}

fn host_of(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map(|x| x.1).unwrap_or(endpoint);
    let host = rest.split('/').next().unwrap_or(rest);
    host.split(':').next().unwrap_or(host)
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Folder { path } => write!(f, "{}", path.display()),
            Place::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                write!(f, "s3://{bucket}/{prefix}")?;
                match endpoint {
                    Some(e) => write!(f, " at {e}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// An absolute path with the existing part's symlinks resolved, for paths that may not exist.
fn absolute(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path)
        .map_err(|e| Error::Invalid(format!("cannot resolve {}: {e}", path.display())))?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Ok(normalize(&out));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Ok(normalize(&abs)),
        }
    }
}

/// Removes `.` and resolves `..` lexically (only in the not-yet-existing tail).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(endpoint: Option<&str>, bucket: &str, prefix: &str) -> Place {
        Place::S3 {
            endpoint: endpoint.map(str::to_string),
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn overlap_is_by_path_segment_and_service() {
        let f = |p: &str| Place::Folder { path: p.into() };
        assert!(f("/a/b").overlaps(&f("/a")));
        assert!(f("/a").overlaps(&f("/a/b/c")));
        assert!(!f("/a/b").overlaps(&f("/a/bc")));
        assert!(s3(None, "b", "").overlaps(&s3(None, "b", "x/y")));
        assert!(s3(None, "b", "x").overlaps(&s3(
            Some("https://s3.eu-west-1.amazonaws.com"),
            "b",
            "x/y"
        )));
        assert!(!s3(None, "b", "x").overlaps(&s3(None, "b", "xy")));
        assert!(!s3(None, "b", "x").overlaps(&s3(None, "c", "x")));
        assert!(!s3(Some("http://r2"), "b", "x").overlaps(&s3(None, "b", "x")));
        assert!(!f("/b").overlaps(&s3(None, "b", "")));
        assert_eq!(strip_userinfo("https://u:p@h:9000/x"), "https://h:9000/x");
        assert_eq!(strip_userinfo("http://h"), "http://h");
    }
}
