//! The environment as the edge read it: a map the CLI builds once from the process
//! environment and passes down, so nothing in the core reads `std::env`. A leaf module:
//! settings, mirrors and drill checks all resolve `*_env` keys and `${VAR}` through it.

use crate::{Error, Result};
use std::collections::BTreeMap;

pub type Env = BTreeMap<String, String>;

/// The environment as `(name, value)` pairs, the form `ConnSpec::parse_with_env` and store
/// options take.
pub fn pairs(env: &Env) -> Vec<(String, String)> {
    env.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The value of the environment variable a `*_env` key names; `None` when the key is unset,
/// an error naming the variable when it is set but the variable is not.
pub fn named_env(env: &Env, var: &Option<String>, key: &str) -> Result<Option<String>> {
    match var {
        None => Ok(None),
        Some(v) => env
            .get(v)
            .filter(|x| !x.is_empty())
            .cloned()
            .map(Some)
            .ok_or_else(|| Error::Invalid(format!("{key} names {v}, which is not set; export it"))),
    }
}

/// Replaces `${VAR}` in `s` with the variable's value; `$${` stays a literal `${`. `path`
/// names the key in errors.
pub fn interpolate(s: &str, env: &Env, path: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(lit) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = lit;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| Error::Invalid(format!("{path}: unclosed ${{ in the value")))?;
            let var = &body[..end];
            let val = env.get(var).ok_or_else(|| {
                Error::Invalid(format!(
                    "{path} uses ${{{var}}}, which is not set; export it"
                ))
            })?;
            out.push_str(val);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}
