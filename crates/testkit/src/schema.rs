//! A structural JSON Schema validator for the subset `docs/result.schema.json` and
//! `docs/schemas/*.json` use: `type` (one or a list), `required`, `properties`,
//! `additionalProperties` (false or a schema), `items`, `enum`, `const`, `minimum`,
//! `minLength`, `anyOf`, `oneOf`, and `$ref` to `#/$defs/...`, to another file
//! (`common.schema.json#/$defs/...`, relative to the referring file) or to a whole file.
//! Keywords outside the subset (`format`, `description`, ...) are ignored, so a schema
//! may say more than is checked here, never less.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// `docs/schemas/` of the repository.
pub fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas")
}

fn load(path: &Path) -> Value {
    let text = std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read the schema {}: {e}", path.display()));
    serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("the schema {} is not JSON: {e}", path.display()))
}

/// Every violation of the schema in `file` (a path, or a name in `docs/schemas/`) by
/// `doc`, as "path: what".
pub fn errors(file: &str, doc: &Value) -> Vec<String> {
    let path = if Path::new(file).is_absolute() || file.contains('/') {
        PathBuf::from(file)
    } else {
        schemas_dir().join(file)
    };
    let root = load(&path);
    let mut out = Vec::new();
    Validator { file: path }.check(&root, &root, doc, "$", &mut out);
    out
}

/// Panics with every violation when `doc` does not match the schema in `file`.
#[track_caller]
pub fn assert_valid(file: &str, doc: &Value) {
    let errs = errors(file, doc);
    assert!(
        errs.is_empty(),
        "the document does not match {file}:\n{}\n{doc:#}",
        errs.join("\n")
    );
}

struct Validator {
    /// The file `root` was read from (relative `$ref`s resolve against its folder).
    file: PathBuf,
}

impl Validator {
    fn check(&self, root: &Value, schema: &Value, doc: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let (file, fragment) = r.split_once('#').unwrap_or((r, ""));
            if file.is_empty() {
                let target = root
                    .pointer(fragment)
                    .unwrap_or_else(|| panic!("unknown $ref {r} in {}", self.file.display()));
                return self.check(root, target, doc, path, out);
            }
            let other = self.file.parent().unwrap_or(Path::new(".")).join(file);
            let other_root = load(&other);
            let target = other_root
                .pointer(fragment)
                .unwrap_or_else(|| panic!("unknown $ref {r} in {}", self.file.display()))
                .clone();
            return Validator { file: other }.check(&other_root, &target, doc, path, out);
        }
        for (key, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            if let Some(alts) = schema.get(key).and_then(Value::as_array) {
                let mut matched = 0;
                let mut all = Vec::new();
                for (i, alt) in alts.iter().enumerate() {
                    let mut e = Vec::new();
                    self.check(root, alt, doc, path, &mut e);
                    if e.is_empty() {
                        matched += 1;
                    } else {
                        all.push(format!("[{key} {i}] {}", e.join("; ")));
                    }
                }
                if matched == 0 || (exactly_one && matched > 1) {
                    out.push(format!(
                        "{path}: {matched} of the {key} alternatives match: {}",
                        all.join(" | ")
                    ));
                }
            }
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let ok = types.iter().any(|t| match *t {
                "object" => doc.is_object(),
                "array" => doc.is_array(),
                "string" => doc.is_string(),
                "boolean" => doc.is_boolean(),
                "null" => doc.is_null(),
                "number" => doc.is_number(),
                "integer" => doc.is_i64() || doc.is_u64(),
                _ => false,
            });
            if !ok {
                out.push(format!("{path}: {doc} is not {types:?}"));
                return;
            }
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array) {
            if !e.contains(doc) {
                out.push(format!("{path}: {doc} not in {e:?}"));
            }
        }
        if let Some(c) = schema.get("const") {
            if c != doc {
                out.push(format!("{path}: {doc} != {c}"));
            }
        }
        if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), doc.as_f64())
        {
            if n < min {
                out.push(format!("{path}: {n} < {min}"));
            }
        }
        if let (Some(min), Some(s)) = (
            schema.get("minLength").and_then(Value::as_u64),
            doc.as_str(),
        ) {
            if (s.chars().count() as u64) < min {
                out.push(format!("{path}: {s:?} is shorter than {min}"));
            }
        }
        if let Some(obj) = doc.as_object() {
            for k in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !obj.contains_key(k) {
                    out.push(format!("{path}: missing required key {k:?}"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in obj {
                let sub = format!("{path}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(s) => self.check(root, s, v, &sub, out),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => out.push(format!("{sub}: not allowed")),
                        Some(s @ Value::Object(_)) => self.check(root, s, v, &sub, out),
                        _ => {}
                    },
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), doc.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                self.check(root, items, v, &format!("{path}[{i}]"), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(schema: Value, doc: Value) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.json");
        std::fs::write(&p, schema.to_string()).expect("write");
        std::fs::write(
            dir.path().join("c.json"),
            json!({"$defs": {"n": {"type": "integer"}}}).to_string(),
        )
        .expect("write");
        errors(p.to_str().expect("utf8"), &doc)
    }

    #[test]
    fn catches_drift_types_refs_and_alternatives() {
        let s = json!({
            "type": "object", "required": ["a"], "additionalProperties": false,
            "properties": {"a": {"$ref": "c.json#/$defs/n"}, "b": {"oneOf": [{"type": "string"}, {"type": "null"}]}}
        });
        assert!(errs(s.clone(), json!({"a": 1, "b": null})).is_empty());
        assert_eq!(errs(s.clone(), json!({"a": "x"})).len(), 1);
        assert_eq!(errs(s.clone(), json!({"a": 1, "c": 2})).len(), 1);
        assert_eq!(errs(s.clone(), json!({"b": 3})).len(), 2);
    }
}
