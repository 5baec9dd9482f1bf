//! Handlebars helpers and escape functions for encode templates (README "Mapping authoring guide").
//!
//! Helpers that return a value (`table`, `default`, `epoch_*`, `number`, `upper`, `lower`) go
//! through the template's escaping like any `{{x}}` and compose as subexpressions; `json`
//! writes raw JSON and is never escaped. Strict mode does not see a missing helper argument,
//! so every helper checks its own.

use super::table::Table;
use chrono::DateTime;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonRender, Output, RenderContext,
    RenderError, RenderErrorReason, ScopedJson,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Characters percent-encoded in query values: everything but RFC 3986 unreserved.
pub const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Escapes text for the inside of a JSON string literal.
pub fn json_escape(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted[1..quoted.len().saturating_sub(1)].to_string()
}

/// Whether `text` is a GUID in its usual 8-4-4-4-12 hex form (Enreach RTE's `EntityId`).
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `{{guid x}}`: `x` lower-cased if it is a GUID; otherwise a name-based GUID derived from
/// it (RFC 9562 version 8: the first 16 bytes of SHA-256 of `callgate:` + `x`, version and
/// variant bits set), so that a vendor's numeric user id (a RingCentral extension id) has a
/// stable GUID where a receiver requires one (RTE `EntityId`).
pub fn guid_for(text: &str) -> String {
    if is_guid(text) {
        return text.to_ascii_lowercase();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("callgate:{text}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Percent-encodes text as UTF-8 for a URL query value.
pub fn percent_escape(text: &str) -> String {
    utf8_percent_encode(text, QUERY_VALUE).to_string()
}

/// Registers every callgate helper on a registry.
pub fn register(registry: &mut Handlebars<'static>, tables: Arc<HashMap<String, Arc<Table>>>) {
    registry.register_helper("json", Box::new(json_helper));
    registry.register_helper("table", value_helper(move |h| table(&tables, h)));
    registry.register_helper("default", value_helper(default));
    registry.register_helper("number", value_helper(number));
    registry.register_helper("obj", value_helper(obj));
    registry.register_helper(
        "eq",
        value_helper(|h| Ok(Value::Bool(present(h, 0) == present(h, 1)))),
    );
    registry.register_helper(
        "ne",
        value_helper(|h| Ok(Value::Bool(present(h, 0) != present(h, 1)))),
    );
    registry.register_helper(
        "upper",
        value_helper(|h| Ok(Value::String(param("upper", h, 0)?.render().to_uppercase()))),
    );
    registry.register_helper(
        "lower",
        value_helper(|h| Ok(Value::String(param("lower", h, 0)?.render().to_lowercase()))),
    );
    registry.register_helper("time_format", value_helper(time_format));
    registry.register_helper(
        "guid",
        value_helper(|h| {
            Ok(match present(h, 0) {
                None => Value::Null,
                Some(v) => Value::String(guid_for(&v.render())),
            })
        }),
    );
    registry.register_helper(
        "epoch_s",
        value_helper(|h| Ok(rfc3339("epoch_s", h)?.timestamp().into())),
    );
    registry.register_helper(
        "epoch_ms",
        value_helper(|h| Ok(rfc3339("epoch_ms", h)?.timestamp_millis().into())),
    );
    registry.register_helper(
        "epoch_us",
        value_helper(|h| Ok(rfc3339("epoch_us", h)?.timestamp_micros().into())),
    );
}

/// A helper that computes a value: the value goes through the template's escaping like any
/// `{{x}}`, and the helper composes as a subexpression.
struct ValueHelper<F>(F);

fn value_helper<F>(f: F) -> Box<dyn HelperDef + Send + Sync>
where
    F: for<'a, 'rc> Fn(&'a Helper<'rc>) -> Result<Value, RenderError> + Send + Sync + 'static,
{
    Box::new(ValueHelper(f))
}

impl<F> HelperDef for ValueHelper<F>
where
    F: for<'a, 'rc> Fn(&'a Helper<'rc>) -> Result<Value, RenderError> + Send + Sync,
{
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        (self.0)(h).map(ScopedJson::Derived)
    }
}

fn missing(helper: &str, h: &Helper<'_>, at: usize) -> RenderError {
    let what = h
        .param(at)
        .and_then(|p| p.relative_path().cloned())
        .unwrap_or_else(|| format!("argument {}", at + 1));
    RenderErrorReason::Other(format!("`{helper}`: {what} is missing")).into()
}

/// Argument `at`, or `None` when it is missing or null: a missing value compares as null, so
/// `{{#if (eq data.call.reason "missed")}}` works when there is no reason (the built-in
/// helpers refuse missing arguments in strict mode).
fn present<'a>(h: &'a Helper<'_>, at: usize) -> Option<&'a Value> {
    h.param(at)
        .filter(|p| !p.is_value_missing())
        .map(|p| p.value())
        .filter(|v| !v.is_null())
}

/// Argument `at`, which the helper requires.
fn param<'a>(helper: &str, h: &'a Helper<'_>, at: usize) -> Result<&'a Value, RenderError> {
    match h.param(at) {
        Some(p) if !p.is_value_missing() => Ok(p.value()),
        _ => Err(missing(helper, h, at)),
    }
}

fn other(message: String) -> RenderError {
    RenderErrorReason::Other(message).into()
}

/// `{{json x}}`: `x` as JSON text (number, bool, null, string with quotes, object).
fn json_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let value = param("json", h, 0)?;
    out.write(&value.to_string())?;
    Ok(())
}

/// `{{table "name" key...}}`: the table's value for the keys joined with `/` (a missing key
/// part is empty text). Null when every key part is missing; fails when the table has no
/// entry and no default.
fn table(tables: &HashMap<String, Arc<Table>>, h: &Helper<'_>) -> Result<Value, RenderError> {
    let name = match param("table", h, 0)? {
        Value::String(name) => std::borrow::Cow::Borrowed(name.as_str()),
        other => std::borrow::Cow::Owned(other.render()),
    };
    let table = tables
        .get(name.as_ref())
        .ok_or_else(|| other(format!("`table`: unknown table `{name}`")))?;
    // The key built in one buffer: this runs several times per rendered event.
    let mut key = String::new();
    let mut any = false;
    for at in 1..h.params().len() {
        if at > 1 {
            key.push('/');
        }
        match present(h, at) {
            Some(Value::String(s)) => key.push_str(s),
            Some(v) => key.push_str(&v.render()),
            None => continue,
        }
        any = true;
    }
    if !any {
        return Ok(Value::Null);
    }
    if let Some(directory) = table.directory() {
        return super::directory::lookup(directory, &key)
            .map_err(|miss| RenderErrorReason::NestedError(Box::new(miss)).into());
    }
    table
        .get(&key)
        .cloned()
        .ok_or_else(|| other(format!("table `{name}` has no entry for `{key}`")))
}

/// `{{default x fallback}}`: `x` unless it is missing or null; null when both are.
fn default(h: &Helper<'_>) -> Result<Value, RenderError> {
    Ok(present(h, 0)
        .or_else(|| present(h, 1))
        .cloned()
        .unwrap_or(Value::Null))
}

/// `{{number x}}`: a numeric string (or number) as a JSON number; null when `x` is missing.
fn number(h: &Helper<'_>) -> Result<Value, RenderError> {
    match present(h, 0) {
        None => Ok(Value::Null),
        Some(Value::Number(n)) => Ok(Value::Number(n.clone())),
        Some(Value::String(s)) => parse_number(s)
            .map(Value::Number)
            .ok_or_else(|| other(format!("`number`: {s:?} is not a number"))),
        Some(v) => Err(other(format!("`number`: {v} is not a number"))),
    }
}

/// `(obj name=value ...)`: a JSON object of the hash arguments, leaving out missing and null
/// ones; write it with `{{json (obj ...)}}`.
fn obj(h: &Helper<'_>) -> Result<Value, RenderError> {
    Ok(Value::Object(
        h.hash()
            .iter()
            .filter(|(_, v)| !v.is_value_missing() && !v.value().is_null())
            .map(|(k, v)| (k.to_string(), v.value().clone()))
            .collect(),
    ))
}

/// The required first argument of `helper` read as an RFC 3339 time (`epoch_*`).
fn rfc3339(helper: &str, h: &Helper<'_>) -> Result<DateTime<chrono::FixedOffset>, RenderError> {
    let text = param(helper, h, 0)?.render();
    DateTime::parse_from_rfc3339(&text)
        .map_err(|e| other(format!("`{helper}`: {text:?} is not an RFC 3339 time: {e}")))
}

/// `{{time_format t "%Y-%m-%d %H:%M:%S%.3f"}}`: an RFC 3339 time in a chrono `strftime`
/// format, in UTC; null when `t` is missing.
fn time_format(h: &Helper<'_>) -> Result<Value, RenderError> {
    if present(h, 0).is_none() {
        return Ok(Value::Null);
    }
    let t = rfc3339("time_format", h)?;
    let format = param("time_format", h, 1)?.render();
    format_time(t, &format)
        .map(Value::String)
        .ok_or_else(|| other(format!("`time_format`: invalid format {format:?}")))
}

/// `t` in UTC in a chrono strftime `format`; `None` when the format is invalid
/// (`{{time_format}}`, here and in render plans).
pub(crate) fn format_time(t: DateTime<chrono::FixedOffset>, format: &str) -> Option<String> {
    let mut out = String::new();
    use std::fmt::Write as _;
    write!(out, "{}", t.with_timezone(&chrono::Utc).format(format)).ok()?;
    Some(out)
}

/// A numeric text (surrounding blanks ignored) as a JSON number, its digits kept
/// (`{{number x}}`, here and in render plans).
pub(crate) fn parse_number(text: &str) -> Option<serde_json::Number> {
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_pass_through_and_other_ids_get_a_stable_one() {
        assert_eq!(
            guid_for("A1EEB030-FF4B-EA11-AC9C-00155D4FDCF3"),
            "a1eeb030-ff4b-ea11-ac9c-00155d4fdcf3"
        );
        let derived = guid_for("809646016");
        assert!(is_guid(&derived), "{derived}");
        assert_eq!(derived, guid_for("809646016"));
        assert_ne!(derived, guid_for("809646017"));
        assert_eq!(&derived[14..15], "8", "version 8");
        assert!(!is_guid("a1eeb030-ff4b-ea11-ac9c-00155d4fdcf"));
        assert!(!is_guid("g1eeb030-ff4b-ea11-ac9c-00155d4fdcf3"));
    }
    use crate::mapping::schema::{ScalarKey, TableFile};
    use serde_json::json;

    fn registry() -> Handlebars<'static> {
        let mut r = Handlebars::new();
        r.set_strict_mode(true);
        r.register_escape_fn(json_escape);
        let table = Table::compile(&TableFile {
            map: [(
                ScalarKey("a/b".into()),
                crate::mapping::table::unspanned(json!("AB")),
            )]
            .into_iter()
            .collect(),
            default: None,
            directory: None,
            ignore_case: false,
        });
        let tables = Arc::new(HashMap::from([("t".to_string(), Arc::new(table))]));
        register(&mut r, tables);
        r
    }

    fn render(tpl: &str, data: Value) -> Result<String, RenderError> {
        registry().render_template(tpl, &data)
    }

    #[test]
    fn json_escaping_and_raw_json() {
        let out = render(
            r#"{"a": "{{s}}", "b": {{json o}}, "c": {{number n}}}"#,
            json!({"s": "x\"y\\z\n", "o": {"k": [1, null]}, "n": "42"}),
        )
        .unwrap();
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            parsed,
            json!({"a": "x\"y\\z\n", "b": {"k": [1, null]}, "c": 42})
        );
    }

    #[test]
    fn table_default_epoch_case() {
        let out = render(
            r#"{{table "t" x y}} {{default missing "d"}} {{epoch_us t}} {{upper x}}"#,
            json!({"x": "a", "y": "b", "t": "2005-06-09T16:50:48.153124Z"}),
        )
        .unwrap();
        assert_eq!(out, "AB d 1118335848153124 A");
    }

    #[test]
    fn obj_leaves_out_missing_values() {
        let out = render(
            r#"{{json (obj a=x b=missing c=n d=(number s))}}"#,
            json!({"x": "1", "n": null, "s": "7"}),
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            json!({"a": "1", "d": 7})
        );
    }

    #[test]
    fn missing_arguments_and_table_misses_are_errors() {
        let err = render("{{json nope}}", json!({})).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        let err = render(r#"{{table "t" x}}"#, json!({"x": "zz"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no entry for `zz`"), "{err}");
        assert!(render("{{plain}}", json!({})).is_err(), "strict mode");
    }

    #[test]
    fn percent_encoding_is_utf8_and_keeps_unreserved() {
        assert_eq!(
            percent_escape("sip:+1@a b/ü-._~"),
            "sip%3A%2B1%40a%20b%2F%C3%BC-._~"
        );
    }
}
