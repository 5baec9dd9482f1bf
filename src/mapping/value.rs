//! Decode-side values: a JSONPath, a literal, or a small computation (table lookup, concat,
//! coalesce, equality, stable hash, conversion), compiled once and evaluated per event.

use super::path::CompiledPath;
use super::schema::{Convert, RawValue, ValueSpec};
use super::table::Table;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// A compiled value expression.
#[derive(Debug, Clone)]
pub enum ValueExpr {
    /// A constant.
    Literal(Value),
    /// The first node a JSONPath selects.
    Path(CompiledPath),
    /// Every node a JSONPath selects, as an array.
    All(CompiledPath),
    /// Several values as text joined with `/` (a multi-part table key); a missing part is
    /// empty text, and all parts missing is absent.
    Join(Vec<ValueExpr>),
    /// Values as text, concatenated; absent if any part is absent.
    Concat(Vec<ValueExpr>),
    /// The first present, non-null value.
    Coalesce(Vec<ValueExpr>),
    /// Equality as text; both absent is equal.
    Eq(Box<ValueExpr>, Box<ValueExpr>),
    /// `then` when the condition holds, else `else`.
    If(Box<ValueExpr>, Box<ValueExpr>, Option<Box<ValueExpr>>),
    /// Hex SHA-256 (first 32 digits) over the JSON text of these paths' values.
    Hash(Vec<CompiledPath>),
    /// A `let` value by position.
    Var(usize),
    /// A table lookup of the inner value's text.
    Table(Box<ValueExpr>, Arc<Table>),
    /// A conversion.
    Convert(Box<ValueExpr>, Convert),
    /// A fallback for an absent or null value.
    Default(Box<ValueExpr>, Value),
}

/// What an expression reads: the payload root, the current `each` element, and the rule's
/// `let` values computed so far.
pub struct Scope<'a> {
    /// The payload (after unwrapping).
    pub root: &'a Value,
    /// The current `each` element, or the root.
    pub item: &'a Value,
    /// `let` values, by position.
    pub vars: &'a [Option<Value>],
}

/// What compiling a value needs from its surroundings.
pub struct CompileEnv<'e> {
    /// The vendor's tables.
    pub tables: &'e HashMap<String, Arc<Table>>,
    /// `let` names declared before this value.
    pub vars: &'e [String],
    /// Paths must be lower case (the vendor's keys are matched case-insensitively).
    pub lowercase_paths: bool,
}

impl CompileEnv<'_> {
    /// Compiles a value as written in YAML; the error names the offending path, table or var.
    pub fn compile(&self, raw: &RawValue) -> Result<ValueExpr, String> {
        match raw {
            RawValue::Path(p) => self.path(p).map(ValueExpr::Path),
            RawValue::Literal(v) => Ok(ValueExpr::Literal(v.clone())),
            RawValue::Spec(spec) => self.spec(spec),
        }
    }

    /// Compiles one JSONPath, enforcing the vendor's key case rule.
    pub fn path(&self, p: &str) -> Result<CompiledPath, String> {
        if self.lowercase_paths && outside_quotes(p).any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "JSONPath `{p}` has upper-case letters, but this vendor's keys are matched \
                 case-insensitively: write member names in lower case"
            ));
        }
        CompiledPath::compile(p).map_err(|e| e.to_string())
    }

    fn spec(&self, spec: &ValueSpec) -> Result<ValueExpr, String> {
        let mut sources = Vec::new();
        if let Some(paths) = &spec.path {
            let mut parts = paths
                .0
                .iter()
                .map(|p| self.path(p).map(ValueExpr::Path))
                .collect::<Result<Vec<_>, _>>()?;
            sources.push(if parts.len() == 1 {
                parts.remove(0)
            } else {
                ValueExpr::Join(parts)
            });
        }
        if let Some(p) = &spec.all {
            sources.push(ValueExpr::All(self.path(p)?));
        }
        if let Some(parts) = &spec.key {
            sources.push(ValueExpr::Join(self.all(parts)?));
        }
        if let Some(v) = &spec.value {
            sources.push(ValueExpr::Literal(v.clone()));
        }
        if let Some(parts) = &spec.concat {
            sources.push(ValueExpr::Concat(self.all(parts)?));
        }
        if let Some(parts) = &spec.coalesce {
            sources.push(ValueExpr::Coalesce(self.all(parts)?));
        }
        if let Some(parts) = &spec.eq {
            let [a, b] = <[ValueExpr; 2]>::try_from(self.all(parts)?)
                .map_err(|_| "`eq` takes exactly two values".to_string())?;
            sources.push(ValueExpr::Eq(Box::new(a), Box::new(b)));
        }
        if let Some(cond) = &spec.if_value {
            let then = spec
                .then
                .as_ref()
                .ok_or_else(|| "`if` needs a `then`".to_string())?;
            let otherwise = match &spec.else_value {
                Some(e) => Some(Box::new(self.compile(e)?)),
                None => None,
            };
            sources.push(ValueExpr::If(
                Box::new(self.compile(cond)?),
                Box::new(self.compile(then)?),
                otherwise,
            ));
        } else if spec.then.is_some() || spec.else_value.is_some() {
            return Err("`then` and `else` need an `if`".into());
        }
        if let Some(paths) = &spec.hash {
            let paths = paths
                .iter()
                .map(|p| self.path(p))
                .collect::<Result<Vec<_>, _>>()?;
            sources.push(ValueExpr::Hash(paths));
        }
        if let Some(name) = &spec.var {
            let at = self.vars.iter().position(|v| v == name).ok_or_else(|| {
                format!(
                    "unknown var `{name}` (declared before this point: {:?})",
                    self.vars
                )
            })?;
            sources.push(ValueExpr::Var(at));
        }
        if sources.len() != 1 {
            return Err(format!(
                "a value needs exactly one of path, all, key, value, concat, coalesce, eq, if, hash, \
                 var (found {})",
                sources.len()
            ));
        }
        let mut expr = sources.remove(0);
        if let Some(name) = &spec.table {
            let table = self
                .tables
                .get(name)
                .ok_or_else(|| format!("unknown table `{name}` (not in tables.yaml)"))?;
            expr = ValueExpr::Table(Box::new(expr), table.clone());
        }
        if let Some(convert) = spec.convert {
            expr = ValueExpr::Convert(Box::new(expr), convert);
        }
        if let Some(default) = &spec.default {
            expr = ValueExpr::Default(Box::new(expr), default.clone());
        }
        Ok(expr)
    }

    fn all(&self, raws: &[RawValue]) -> Result<Vec<ValueExpr>, String> {
        raws.iter().map(|r| self.compile(r)).collect()
    }
}

/// The characters of a path that are not inside quoted strings.
fn outside_quotes(p: &str) -> impl Iterator<Item = char> + '_ {
    let mut quote: Option<char> = None;
    p.chars().filter(move |&c| match quote {
        Some(q) if c == q => {
            quote = None;
            false
        }
        Some(_) => false,
        None if c == '\'' || c == '"' => {
            quote = Some(c);
            false
        }
        None => true,
    })
}

impl ValueExpr {
    /// Evaluates the expression; `None` when the value is absent.
    pub fn eval<'a>(&'a self, scope: &Scope<'a>) -> Option<Cow<'a, Value>> {
        match self {
            ValueExpr::Literal(v) => Some(Cow::Borrowed(v)),
            ValueExpr::Path(p) => p
                .first(scope.root, scope.item)
                .filter(|v| !v.is_null())
                .map(Cow::Borrowed),
            ValueExpr::All(p) => {
                let found: Vec<Value> = p
                    .select(scope.root, scope.item)
                    .into_iter()
                    .cloned()
                    .collect();
                (!found.is_empty()).then_some(Cow::Owned(Value::Array(found)))
            }
            ValueExpr::Join(parts) => {
                let texts: Vec<Option<String>> =
                    parts.iter().map(|p| p.eval(scope).and_then(text)).collect();
                if texts.iter().all(Option::is_none) {
                    return None;
                }
                let joined: Vec<String> =
                    texts.into_iter().map(Option::unwrap_or_default).collect();
                Some(Cow::Owned(Value::String(joined.join("/"))))
            }
            ValueExpr::Concat(parts) => {
                let mut out = String::new();
                for part in parts {
                    out.push_str(&part.eval(scope).and_then(text)?);
                }
                Some(Cow::Owned(Value::String(out)))
            }
            ValueExpr::Coalesce(parts) => parts.iter().find_map(|p| p.eval(scope)),
            ValueExpr::Eq(a, b) => {
                let a = a.eval(scope).and_then(text);
                let b = b.eval(scope).and_then(text);
                Some(Cow::Owned(Value::Bool(a == b)))
            }
            ValueExpr::If(cond, then, otherwise) => {
                let holds = match cond.eval(scope).as_deref() {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) => !s.is_empty() && s != "false",
                    Some(Value::Null) | None => false,
                    Some(_) => true,
                };
                if holds {
                    then.eval(scope)
                } else {
                    otherwise.as_ref().and_then(|e| e.eval(scope))
                }
            }
            ValueExpr::Hash(paths) => {
                let mut hasher = Sha256::new();
                for p in paths {
                    let v = p.first(scope.root, scope.item).unwrap_or(&Value::Null);
                    hasher.update(v.to_string().as_bytes());
                    hasher.update([0u8]);
                }
                let digest = hasher.finalize();
                let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
                Some(Cow::Owned(Value::String(hex)))
            }
            ValueExpr::Var(at) => scope
                .vars
                .get(*at)
                .and_then(Option::as_ref)
                .map(Cow::Borrowed),
            ValueExpr::Table(inner, table) => {
                let key = inner.eval(scope).and_then(text)?;
                table.get(&key).filter(|v| !v.is_null()).map(Cow::Borrowed)
            }
            ValueExpr::Convert(inner, convert) => {
                convert_value(inner.eval(scope)?.as_ref(), *convert).map(Cow::Owned)
            }
            ValueExpr::Default(inner, fallback) => {
                Some(inner.eval(scope).unwrap_or(Cow::Borrowed(fallback)))
            }
        }
    }
}

/// A scalar as text: strings as they are, numbers and bools printed; null and absent are
/// `None`; arrays and objects as compact JSON.
pub fn text(v: Cow<'_, Value>) -> Option<String> {
    match v {
        // An owned string is moved, not copied.
        Cow::Owned(Value::String(s)) => Some(s),
        v => match v.as_ref() {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        },
    }
}

fn convert_value(v: &Value, convert: Convert) -> Option<Value> {
    match convert {
        Convert::Time => to_rfc3339(v).map(Value::String),
        Convert::String => text(Cow::Borrowed(v)).map(Value::String),
        Convert::Number => match v {
            Value::Number(_) => Some(v.clone()),
            Value::String(s) => serde_json::from_str::<serde_json::Number>(s.trim())
                .ok()
                .map(Value::Number),
            _ => None,
        },
        Convert::Lower => text(Cow::Borrowed(v)).map(|s| Value::String(s.to_lowercase())),
        Convert::Upper => text(Cow::Borrowed(v)).map(|s| Value::String(s.to_uppercase())),
        Convert::List => Some(match v {
            Value::Array(_) => v.clone(),
            other => Value::Array(vec![other.clone()]),
        }),
    }
}

/// Reads a vendor time as RFC 3339 UTC. Epoch numbers (or digit strings) by magnitude:
/// up to 10 digits seconds, 13 milliseconds, 16 microseconds, more nanoseconds. Strings in
/// RFC 3339, ISO 8601 with a `+0000` offset, or without offset (read as UTC, as Enreach and
/// Oracle FACE write them).
pub fn to_rfc3339(v: &Value) -> Option<String> {
    let formatted = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let from_epoch = |n: i64| {
        let digits = n.unsigned_abs().to_string().len();
        let t = match digits {
            0..=10 => Utc.timestamp_opt(n, 0).single(),
            11..=13 => Utc.timestamp_millis_opt(n).single(),
            14..=16 => Some(Utc.timestamp_nanos(n.checked_mul(1000)?)),
            _ => Some(Utc.timestamp_nanos(n)),
        };
        t.map(formatted)
    };
    match v {
        Value::Number(n) => from_epoch(n.as_i64()?),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return from_epoch(s.parse().ok()?);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(formatted(t.with_timezone(&Utc)));
            }
            if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
                return Some(formatted(t.with_timezone(&Utc)));
            }
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                .map(|t| formatted(t.and_utc()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_by_magnitude_and_form() {
        let t = |v: Value| to_rfc3339(&v);
        assert_eq!(t(json!(1700000123)).unwrap(), "2023-11-14T22:15:23Z");
        assert_eq!(
            t(json!(1700000123456i64)).unwrap(),
            "2023-11-14T22:15:23.456Z"
        );
        assert_eq!(
            t(json!(1118335848153124i64)).unwrap(),
            "2005-06-09T16:50:48.153124Z"
        );
        assert_eq!(
            t(json!("2014-04-29T13:23:12.468+0000")).unwrap(),
            "2014-04-29T13:23:12.468Z"
        );
        assert_eq!(
            t(json!("2018-08-30 14:58:57.149")).unwrap(),
            "2018-08-30T14:58:57.149Z"
        );
        assert_eq!(
            t(json!("2020-06-23T01:05:52.656Z")).unwrap(),
            "2020-06-23T01:05:52.656Z"
        );
        assert_eq!(t(json!("not a time")), None);
    }

    #[test]
    fn quoted_text_is_ignored_by_the_case_rule() {
        let upper: String = outside_quotes("$.a[?@.b == 'UP']").collect();
        assert_eq!(upper, "$.a[?@.b == ]");
    }
}
