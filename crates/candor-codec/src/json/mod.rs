//! Conversion between the crate's types and the JSON shape of the conformance
//! vectors (feature `json`), for the CLI and the conformance tests.
//!
//! Kept out of the core types on purpose: the codec has no serde dependency,
//! and the JSON field names (camelCase for TCF, the IAB's PascalCase for GPP)
//! live only here.

pub(crate) mod gpp;
pub(crate) mod tcf;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

fn err(path: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Json {
        path: path.into(),
        reason: reason.into(),
    }
}

/// A JSON object being read, with its path for error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: &str) -> Result<Self> {
        let map = v
            .as_object()
            .ok_or_else(|| err(path, "expected an object"))?;
        Ok(Self {
            map,
            path: path.to_owned(),
        })
    }

    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn req(&self, key: &str) -> Result<&'a Value> {
        self.get(key).ok_or_else(|| err(self.at(key), "missing"))
    }

    /// Refuses keys outside `allowed`, so a typo in hand-written JSON is an
    /// error rather than a silently missing field.
    fn deny_unknown(&self, allowed: &[&str]) -> Result<()> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(err(self.at(k), "unknown field")),
            None => Ok(()),
        }
    }

    fn uint(&self, key: &str, max: u64) -> Result<u64> {
        uint(self.req(key)?, max, &self.at(key))
    }

    fn uint_or(&self, key: &str, max: u64, default: u64) -> Result<u64> {
        match self.get(key) {
            Some(v) => uint(v, max, &self.at(key)),
            None => Ok(default),
        }
    }

    fn boolean(&self, key: &str) -> Result<bool> {
        self.req(key)?
            .as_bool()
            .ok_or_else(|| err(self.at(key), "expected a boolean"))
    }

    fn string(&self, key: &str) -> Result<&'a str> {
        self.req(key)?
            .as_str()
            .ok_or_else(|| err(self.at(key), "expected a string"))
    }

    /// An optional array of ids in `1..=max` (missing means empty).
    fn ids(&self, key: &str, max: u64) -> Result<Vec<u64>> {
        let Some(v) = self.get(key) else {
            return Ok(Vec::new());
        };
        let path = self.at(key);
        let arr = v
            .as_array()
            .ok_or_else(|| err(&path, "expected an array of ids"))?;
        arr.iter()
            .enumerate()
            .map(|(i, x)| {
                let id = uint(x, max, &format!("{path}[{i}]"))?;
                if id == 0 {
                    return Err(err(format!("{path}[{i}]"), "ids start at 1"));
                }
                Ok(id)
            })
            .collect()
    }
}

fn uint(v: &Value, max: u64, path: &str) -> Result<u64> {
    let n = v
        .as_u64()
        .ok_or_else(|| err(path, "expected a non-negative integer"))?;
    if n > max {
        return Err(err(path, format!("{n} is larger than {max}")));
    }
    Ok(n)
}
