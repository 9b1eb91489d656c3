//! Reading request bodies and query strings field by field, so every refusal names its field.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::ApiError;
use crate::collect::MAX_WAIT;
use crate::domain::Fen;

/// A JSON object body. An empty body reads as `{}`.
pub(crate) struct Body(Map<String, Value>);

impl Body {
    /// Parses the body; `allowed` are the only fields it may carry.
    pub(crate) fn parse(bytes: &[u8], allowed: &[&str]) -> Result<Body, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad("body", format!("not JSON: {e} (line {}, column {})", e.line(), e.column())))?;
        let Value::Object(map) = value else {
            return Err(ApiError::bad("body", "expected a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad(
                "body",
                format!("unknown field {unknown:?}; expected one of {}", allowed.join(", ")),
            ));
        }
        Ok(Body(map))
    }

    /// A string field, if present (and not null).
    pub(crate) fn str(&self, field: &'static str) -> Result<Option<&str>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(ApiError::bad(field, format!("expected a string, got {other}"))),
        }
    }

    /// An integer field, if present.
    pub(crate) fn int(&self, field: &'static str) -> Result<Option<i64>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                n.as_i64().map(Some).ok_or_else(|| ApiError::bad(field, format!("expected an integer, got {n}")))
            }
            Some(other) => Err(ApiError::bad(field, format!("expected an integer, got {other}"))),
        }
    }

    /// An amount in yuan: a string (`"300"`, `"300.00"`) or an integer number of yuan.
    pub(crate) fn yuan(&self, field: &'static str) -> Result<Option<Fen>, ApiError> {
        let text = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_i64() => n.to_string(),
            Some(other) => {
                return Err(ApiError::bad(field, format!("expected yuan as a string like \"300.00\", got {other}")))
            }
        };
        Fen::from_yuan_str(&text)
            .map(Some)
            .map_err(|e| ApiError::bad(field, format!("not an amount in yuan: {text:?} ({e})")))
    }

    /// `wait_ms`, bounded by [`MAX_WAIT`].
    pub(crate) fn wait(&self) -> Result<Option<Duration>, ApiError> {
        self.int("wait_ms")?.map(wait_ms).transpose()
    }
}

/// A `wait_ms` value as a duration.
pub(crate) fn wait_ms(ms: i64) -> Result<Duration, ApiError> {
    let max = i64::try_from(MAX_WAIT.as_millis()).unwrap_or(i64::MAX);
    if !(0..=max).contains(&ms) {
        return Err(ApiError::bad("wait_ms", format!("{ms} is not between 0 and {max}")));
    }
    Ok(Duration::from_millis(ms.unsigned_abs()))
}

/// A query parameter parsed with `parse`, naming it on failure.
pub(crate) fn query_param<T>(
    params: &HashMap<String, String>,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => parse(v).map(Some).map_err(|e| ApiError::bad(name, e)),
    }
}
