//! Decode-side values: a JSONPath, a literal, or a small computation (table lookup, concat,
//! coalesce, equality, stable hash, conversion), compiled once and evaluated per event.

use super::path::CompiledPath;
use super::schema::{Convert, RawValue, ValueSpec};
use super::table::Table;
use chrono::format::{Item, StrftimeItems};
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
    Convert(Box<ValueExpr>, Conversion),
    /// A fallback for an absent or null value.
    Default(Box<ValueExpr>, Value),
}

/// A compiled `convert`: the YAML's [`Convert`] with its declared time formats.
#[derive(Debug, Clone, PartialEq)]
pub enum Conversion {
    /// To RFC 3339 UTC from the first of these formats that parses.
    Time(Vec<TimeFormat>),
    /// To a JSON string.
    String,
    /// To a JSON number (a value that is not one is an error).
    Number,
    /// To lower case.
    Lower,
    /// To upper case.
    Upper,
    /// To an array.
    List,
}

/// A declared format of a vendor time (`format:` beside `convert: time`).
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    /// RFC 3339 (`2026-12-04T16:09:00.250Z`, `+01:00`).
    Rfc3339,
    /// RFC 2822 (`Fri, 04 Dec 2026 16:09:00 +0000`): Twilio's `Timestamp`.
    Rfc2822,
    /// Seconds since the Unix epoch (a number or digit text; fractions allowed).
    EpochS,
    /// Milliseconds since the Unix epoch.
    EpochMs,
    /// Microseconds since the Unix epoch (Vidyo's "Java timestamps").
    EpochUs,
    /// A chrono strftime pattern; without an offset in it the time is read as UTC.
    Strftime(String),
}

impl TimeFormat {
    /// Reads a format as `decode.yaml` names it; the error lists what is accepted.
    pub fn parse(name: &str) -> Result<TimeFormat, String> {
        Ok(match name {
            "rfc3339" => TimeFormat::Rfc3339,
            "rfc2822" => TimeFormat::Rfc2822,
            "epoch_s" => TimeFormat::EpochS,
            "epoch_ms" => TimeFormat::EpochMs,
            "epoch_us" => TimeFormat::EpochUs,
            pattern if pattern.contains('%') => {
                check_strftime(pattern)?;
                TimeFormat::Strftime(pattern.to_string())
            }
            other => {
                let names = ["rfc3339", "rfc2822", "epoch_s", "epoch_ms", "epoch_us"];
                return Err(format!(
                    "unknown time format `{other}`{}: give rfc3339, rfc2822, epoch_s, epoch_ms, \
                     epoch_us, or a strftime pattern such as \"%Y-%m-%d %H:%M:%S%.f\"",
                    crate::model::schema::suggestion(other, names.into_iter())
                ));
            }
        })
    }

    /// The format's name as `decode.yaml` writes it.
    pub fn name(&self) -> &str {
        match self {
            TimeFormat::Rfc3339 => "rfc3339",
            TimeFormat::Rfc2822 => "rfc2822",
            TimeFormat::EpochS => "epoch_s",
            TimeFormat::EpochMs => "epoch_ms",
            TimeFormat::EpochUs => "epoch_us",
            TimeFormat::Strftime(p) => p,
        }
    }

    /// The time `v` gives in this format, as RFC 3339 UTC.
    fn read(&self, v: &Value) -> Option<String> {
        let formatted = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let epoch = |scale: i64| -> Option<String> {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_string(),
                _ => return None,
            };
            let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
            if whole.is_empty() && fraction.is_empty()
                || !whole
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                || !fraction.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let whole: i64 = if whole.is_empty() || whole == "-" {
                0
            } else {
                whole.parse().ok()?
            };
            // Nanoseconds of the unit: 10^9 / scale; the fraction in the same unit.
            let unit_ns = 1_000_000_000 / scale;
            let mut frac_ns: i64 = 0;
            let mut place = unit_ns;
            for digit in fraction.bytes().take(9) {
                place /= 10;
                frac_ns += i64::from(digit - b'0') * place;
            }
            let sign = if text.starts_with('-') { -1 } else { 1 };
            let nanos = whole.checked_mul(unit_ns)?.checked_add(sign * frac_ns)?;
            Some(formatted(Utc.timestamp_nanos(nanos)))
        };
        match self {
            TimeFormat::EpochS => epoch(1),
            TimeFormat::EpochMs => epoch(1_000),
            TimeFormat::EpochUs => epoch(1_000_000),
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(v.as_str()?.trim())
                .ok()
                .map(|t| formatted(t.with_timezone(&Utc))),
            TimeFormat::Rfc2822 => DateTime::parse_from_rfc2822(v.as_str()?.trim())
                .ok()
                .map(|t| formatted(t.with_timezone(&Utc))),
            TimeFormat::Strftime(pattern) => {
                let s = v.as_str()?.trim();
                DateTime::parse_from_str(s, pattern)
                    .map(|t| t.with_timezone(&Utc))
                    .or_else(|_| NaiveDateTime::parse_from_str(s, pattern).map(|t| t.and_utc()))
                    .ok()
                    .map(formatted)
            }
        }
    }
}

/// Checks a chrono strftime pattern at load; the error names the bad specifier.
pub fn check_strftime(pattern: &str) -> Result<(), String> {
    if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
        return Err(format!(
            "`{pattern}` is not a valid strftime pattern (chrono's specifiers: %Y %m %d %H %M %S %.f %z ...)"
        ));
    }
    Ok(())
}

/// A value that a declared conversion could not read: what decode reports (422 on a webhook).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertError {
    /// The value as the vendor sent it.
    pub value: String,
    /// The formats tried, as `decode.yaml` names them.
    pub format: String,
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
                let declared = if self.vars.is_empty() {
                    "none".to_string()
                } else {
                    self.vars.join(", ")
                };
                format!(
                    "unknown var `{name}`{} (declared before this point: {declared})",
                    crate::model::schema::suggestion(name, self.vars.iter().map(String::as_str))
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
        match (spec.convert, &spec.format) {
            (Some(Convert::Time), formats) => {
                let formats = match formats {
                    Some(names) => names
                        .0
                        .iter()
                        .map(|n| TimeFormat::parse(n))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => vec![TimeFormat::Rfc3339],
                };
                if formats.is_empty() {
                    return Err("`format` lists no format".into());
                }
                expr = ValueExpr::Convert(Box::new(expr), Conversion::Time(formats));
            }
            (Some(other), None) => {
                let conversion = match other {
                    Convert::Time => Conversion::Time(vec![TimeFormat::Rfc3339]),
                    Convert::String => Conversion::String,
                    Convert::Number => Conversion::Number,
                    Convert::Lower => Conversion::Lower,
                    Convert::Upper => Conversion::Upper,
                    Convert::List => Conversion::List,
                };
                expr = ValueExpr::Convert(Box::new(expr), conversion);
            }
            (_, Some(_)) => return Err("`format` goes with `convert: time` only".into()),
            (None, None) => {}
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

/// The result of evaluating an expression: the value, `None` when absent, or a conversion
/// that failed.
pub type Evaluated<'a> = Result<Option<Cow<'a, Value>>, ConvertError>;

impl ValueExpr {
    /// Evaluates the expression; `Ok(None)` when the value is absent, `Err` when a declared
    /// conversion cannot read the value.
    pub fn eval<'a>(&'a self, scope: &Scope<'a>) -> Evaluated<'a> {
        Ok(match self {
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
                // Joined in one buffer: this builds most table keys.
                let mut joined = String::new();
                let mut any = false;
                for (index, p) in parts.iter().enumerate() {
                    if index > 0 {
                        joined.push('/');
                    }
                    if let Some(part) = p.eval(scope)? {
                        any |= push_text(&mut joined, &part);
                    }
                }
                if !any {
                    return Ok(None);
                }
                Some(Cow::Owned(Value::String(joined)))
            }
            ValueExpr::Concat(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part.eval(scope)?.and_then(text) {
                        Some(t) => out.push_str(&t),
                        None => return Ok(None),
                    }
                }
                Some(Cow::Owned(Value::String(out)))
            }
            ValueExpr::Coalesce(parts) => {
                for p in parts {
                    if let Some(v) = p.eval(scope)? {
                        return Ok(Some(v));
                    }
                }
                None
            }
            ValueExpr::Eq(a, b) => {
                let (a, b) = (a.eval(scope)?, b.eval(scope)?);
                let same = match (a.as_deref(), b.as_deref()) {
                    // Both strings: compared as they are, without copies.
                    (Some(Value::String(x)), Some(Value::String(y))) => x == y,
                    _ => a.and_then(text) == b.and_then(text),
                };
                Some(Cow::Owned(Value::Bool(same)))
            }
            ValueExpr::If(cond, then, otherwise) => {
                let holds = match cond.eval(scope)?.as_deref() {
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) => !s.is_empty() && s != "false",
                    Some(Value::Null) | None => false,
                    Some(_) => true,
                };
                if holds {
                    then.eval(scope)?
                } else {
                    match otherwise {
                        Some(e) => e.eval(scope)?,
                        None => None,
                    }
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
            ValueExpr::Table(inner, table) => match inner.eval(scope)?.and_then(text) {
                Some(key) => table.get(&key).filter(|v| !v.is_null()).map(Cow::Borrowed),
                None => None,
            },
            ValueExpr::Convert(inner, conversion) => match inner.eval(scope)? {
                Some(v) => Some(Cow::Owned(convert_value(v.as_ref(), conversion)?)),
                None => None,
            },
            ValueExpr::Default(inner, fallback) => {
                Some(inner.eval(scope)?.unwrap_or(Cow::Borrowed(fallback)))
            }
        })
    }

    /// Every constant this expression can yield — literals, table values (with their line in
    /// `tables.yaml`) and defaults — for checking them against the canonical field they feed.
    /// Values read from the payload are not constants and are left out.
    pub fn constants(&self) -> Vec<(Value, Option<u64>)> {
        let mut out = Vec::new();
        self.collect_constants(&mut out);
        out
    }

    fn collect_constants(&self, out: &mut Vec<(Value, Option<u64>)>) {
        match self {
            ValueExpr::Literal(v) => out.push((v.clone(), None)),
            ValueExpr::Coalesce(parts) => parts.iter().for_each(|p| p.collect_constants(out)),
            ValueExpr::If(_, then, otherwise) => {
                then.collect_constants(out);
                if let Some(e) = otherwise {
                    e.collect_constants(out);
                }
            }
            ValueExpr::Table(_, table) => {
                for (v, line) in table.values_with_lines() {
                    out.push((v.clone(), (*line > 0).then_some(*line)));
                }
            }
            ValueExpr::Default(inner, fallback) => {
                inner.collect_constants(out);
                out.push((fallback.clone(), None));
            }
            _ => {}
        }
    }
}

/// Appends a value's [`text`] to `out`; `false` (nothing appended) for null.
fn push_text(out: &mut String, v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => {
            out.push_str(s);
            true
        }
        other => {
            out.push_str(&other.to_string());
            true
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

fn convert_value(v: &Value, conversion: &Conversion) -> Result<Value, ConvertError> {
    Ok(match conversion {
        Conversion::Time(formats) => {
            return formats
                .iter()
                .find_map(|f| f.read(v))
                .map(Value::String)
                .ok_or_else(|| ConvertError {
                    value: match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                    format: formats
                        .iter()
                        .map(TimeFormat::name)
                        .collect::<Vec<_>>()
                        .join(" or "),
                });
        }
        Conversion::String => text(Cow::Borrowed(v))
            .map(Value::String)
            .unwrap_or(Value::Null),
        Conversion::Number => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) if s.trim().is_empty() => Value::Null,
            Value::String(s) => serde_json::from_str::<serde_json::Number>(s.trim())
                .map(Value::Number)
                .map_err(|_| ConvertError {
                    value: s.clone(),
                    format: "number".into(),
                })?,
            other => {
                return Err(ConvertError {
                    value: other.to_string(),
                    format: "number".into(),
                });
            }
        },
        Conversion::Lower => text(Cow::Borrowed(v))
            .map(|s| Value::String(s.to_lowercase()))
            .unwrap_or(Value::Null),
        Conversion::Upper => text(Cow::Borrowed(v))
            .map(|s| Value::String(s.to_uppercase()))
            .unwrap_or(Value::Null),
        Conversion::List => match v {
            Value::Array(_) => v.clone(),
            other => Value::Array(vec![other.clone()]),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_in_their_declared_formats() {
        let t = |f: &str, v: Value| TimeFormat::parse(f).unwrap().read(&v);
        assert_eq!(
            t("epoch_s", json!(1700000123)).unwrap(),
            "2023-11-14T22:15:23Z"
        );
        assert_eq!(
            t("epoch_s", json!("1700000123.5")).unwrap(),
            "2023-11-14T22:15:23.500Z"
        );
        assert_eq!(
            t("epoch_ms", json!(1700000123456i64)).unwrap(),
            "2023-11-14T22:15:23.456Z"
        );
        assert_eq!(
            t("epoch_us", json!(1118335848153124i64)).unwrap(),
            "2005-06-09T16:50:48.153124Z"
        );
        assert_eq!(
            t("rfc2822", json!("Fri, 04 Dec 2026 16:09:00 +0000")).unwrap(),
            "2026-12-04T16:09:00Z"
        );
        assert_eq!(
            t("rfc3339", json!("2020-06-23T01:05:52.656+02:00")).unwrap(),
            "2020-06-22T23:05:52.656Z"
        );
        assert_eq!(
            t("%Y-%m-%d %H:%M:%S%.f", json!("2018-08-30 14:58:57.149")).unwrap(),
            "2018-08-30T14:58:57.149Z"
        );
        assert_eq!(
            t(
                "%Y-%m-%dT%H:%M:%S%.f%z",
                json!("2014-04-29T13:23:12.468+0000")
            )
            .unwrap(),
            "2014-04-29T13:23:12.468Z"
        );
        assert_eq!(t("rfc3339", json!("Fri, 04 Dec 2026 16:09:00 +0000")), None);
        assert_eq!(t("epoch_s", json!("12abc")), None);
        assert_eq!(t("epoch_s", json!(true)), None);
        assert!(
            TimeFormat::parse("rfc2882")
                .unwrap_err()
                .contains("did you mean `rfc2822`")
        );
        assert!(TimeFormat::parse("%Y-%Q").is_err());
    }

    #[test]
    fn a_value_in_no_declared_format_is_an_error_naming_value_and_format() {
        let conversion = Conversion::Time(vec![TimeFormat::Rfc3339, TimeFormat::EpochMs]);
        let err = convert_value(&json!("yesterday"), &conversion).unwrap_err();
        assert_eq!(err.value, "yesterday");
        assert_eq!(err.format, "rfc3339 or epoch_ms");
    }

    #[test]
    fn quoted_text_is_ignored_by_the_case_rule() {
        let upper: String = outside_quotes("$.a[?@.b == 'UP']").collect();
        assert_eq!(upper, "$.a[?@.b == ]");
    }
}
