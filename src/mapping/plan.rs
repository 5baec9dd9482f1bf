//! Render plans: an encode template compiled at load, from the template `handlebars` parsed
//! and the compile step checked, into literal byte runs, typed reads of the [`CallEvent`]
//! (through [`crate::model::fields`]), compiled helper calls, conditionals and loops. Running
//! a plan writes the escaped output straight into one buffer: no JSON context tree is built
//! and no field is copied into one (README "How templates run").
//!
//! Handlebars stays the reference: a plan is built only for what it renders byte for byte as
//! `handlebars` does (the differential test in `tests/it/plans.rs` holds it to that), and a
//! plan that cannot render an event ([`Refused`]: a missing value in strict mode, a helper
//! error, a directory miss) hands it to `handlebars`, whose error the user sees.

use super::helpers::{QUERY_VALUE, format_time, guid_for, parse_number};
use super::table::Table;
use super::typecheck::{self, is_helper};
use crate::model::event::CallEvent;
use crate::model::fields::{self, FieldValue, Read};
use crate::model::schema;
use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{JsonRender, JsonTruthy, Path as HbsPath};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// How a plan escapes the values it writes with `{{x}}`: as its registry's escape function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// The inside of a JSON string literal (`helpers::json_escape`).
    Json,
    /// A URL query value, percent-encoded UTF-8 (`helpers::percent_escape`).
    Percent,
}

/// Why a template has no plan: it uses something plans do not render (it is rendered by
/// `handlebars`, as before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplanned(pub String);

/// A plan could not render this event; `handlebars` renders it (and reports its error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// A compiled template.
#[derive(Debug)]
pub struct RenderPlan {
    steps: Vec<Step>,
    escape: Escape,
    /// Proven at load to write valid JSON for every event, already compact (see
    /// [`RenderPlan::writes_compact_json`]).
    compact_json: bool,
}

#[derive(Debug)]
enum Step {
    /// Template text, written as is.
    Raw(Box<str>),
    /// `{{x}}` (escaped) or `{{{x}}}` (not): the value's text.
    Write { value: Expr, escaped: bool },
    /// `{{json x}}`: the value as JSON text, never escaped.
    Json(Expr),
    /// `{{#if x}}…{{else}}…{{/if}}` (`unless`: `negate`).
    If {
        condition: Expr,
        negate: bool,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
    /// `{{#each list}}…{{else}}…{{/each}}` over a list of texts.
    Each {
        list: Expr,
        body: Vec<Step>,
        otherwise: Option<Vec<Step>>,
    },
}

#[derive(Debug)]
enum Expr {
    /// A canonical field or group, and its dotted name.
    Field(Read, Box<str>),
    /// A member of `data.extensions`, by its segments below it.
    Extension(Vec<String>),
    /// A literal (`"x"`, `0`, `true`).
    Literal(Value),
    /// Inside `#each`: the item (`this`) or `@index`, `@first`, `@last`.
    Item(ItemPart),
    /// A helper call.
    Call(Helper, Vec<Expr>),
    /// `(obj name=value ...)`, the names sorted as the JSON object writes them.
    Obj(Vec<(String, Expr)>),
    /// `(json x)` as a subexpression: the JSON text as a string.
    JsonText(Box<Expr>),
}

#[derive(Debug, Clone, Copy)]
enum ItemPart {
    This,
    Index,
    First,
    Last,
}

#[derive(Debug)]
enum Helper {
    Table(Arc<Table>),
    Default,
    Number,
    Eq,
    Ne,
    Upper,
    Lower,
    TimeFormat,
    Guid,
    EpochS,
    EpochMs,
    EpochUs,
    Lookup,
}

/// What `this` is while compiling.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Event,
    /// Inside `#each` over a list of texts.
    Item,
}

impl RenderPlan {
    /// Compiles a parsed template, or says what keeps it with `handlebars`.
    pub fn compile(
        template: &Template,
        tables: &HashMap<String, Arc<Table>>,
        escape: Escape,
    ) -> Result<RenderPlan, Unplanned> {
        let compiler = Compiler { tables };
        let mut steps = compiler.template(template, Scope::Event)?;
        let compact_json = escape == Escape::Json && proof::compact_json(&mut steps);
        Ok(RenderPlan {
            steps,
            escape,
            compact_json,
        })
    }

    /// Whether what this plan writes is proven at load to be valid, compact JSON whatever
    /// the event (so the output needs no validating parse): every `{{x}}` sits inside a JSON
    /// string, every `{{json x}}` and number helper where a value may stand, and every way
    /// through the conditionals and loops forms valid JSON; the template text's whitespace
    /// outside strings is removed at load.
    pub fn writes_compact_json(&self) -> bool {
        self.compact_json
    }

    /// Renders `event`, appending to `out` (as `handlebars` would write it).
    pub fn render(&self, event: &CallEvent, out: &mut String) -> Result<(), Refused> {
        let start = out.len();
        let result = Run {
            event,
            escape: self.escape,
        }
        .steps(&self.steps, None, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

struct Compiler<'t> {
    tables: &'t HashMap<String, Arc<Table>>,
}

fn unplanned<T>(what: impl Into<String>) -> Result<T, Unplanned> {
    Err(Unplanned(what.into()))
}

impl Compiler<'_> {
    fn template(&self, template: &Template, scope: Scope) -> Result<Vec<Step>, Unplanned> {
        let mut steps = Vec::new();
        for element in &template.elements {
            match element {
                TemplateElement::RawString(text) => {
                    if !text.is_empty() {
                        steps.push(Step::Raw(text.as_str().into()));
                    }
                }
                TemplateElement::Comment(_) => {}
                TemplateElement::Expression(h) => steps.push(self.expression(h, scope, true)?),
                TemplateElement::HtmlExpression(h) => steps.push(self.expression(h, scope, false)?),
                TemplateElement::HelperBlock(h) => steps.push(self.block(h, scope)?),
                _ => return unplanned("partials and decorators"),
            }
        }
        Ok(steps)
    }

    fn expression(
        &self,
        h: &HelperTemplate,
        scope: Scope,
        escaped: bool,
    ) -> Result<Step, Unplanned> {
        if h.block {
            return unplanned("a block in an expression");
        }
        match &h.name {
            Parameter::Name(name) if name == "json" => {
                let [value] = &h.params[..] else {
                    return unplanned("`json` with other than one argument");
                };
                if !h.hash.is_empty() {
                    return unplanned("`json` with hash arguments");
                }
                Ok(Step::Json(self.param(value, scope)?))
            }
            Parameter::Name(name)
                if h.params.is_empty() && h.hash.is_empty() && !is_helper(name) =>
            {
                Ok(Step::Write {
                    value: self.path(name, scope)?,
                    escaped,
                })
            }
            Parameter::Name(name) => Ok(Step::Write {
                value: self.call(name, &h.params, &h.hash, scope)?,
                escaped,
            }),
            Parameter::Path(path) if h.params.is_empty() && h.hash.is_empty() => Ok(Step::Write {
                value: self.hbs_path(path, scope)?,
                escaped,
            }),
            _ => unplanned("an expression that is neither a value nor a helper call"),
        }
    }

    fn block(&self, h: &HelperTemplate, scope: Scope) -> Result<Step, Unplanned> {
        let Some(name) = h.name.as_name() else {
            return unplanned("a block without a helper name");
        };
        if !h.hash.is_empty() || h.block_param.is_some() {
            return unplanned(format!("`#{name}` with hash arguments or block parameters"));
        }
        let [condition] = &h.params[..] else {
            return unplanned(format!("`#{name}` with other than one argument"));
        };
        let condition = self.param(condition, scope)?;
        match name {
            "if" | "unless" => Ok(Step::If {
                condition,
                negate: name == "unless",
                then: match &h.template {
                    Some(t) => self.template(t, scope)?,
                    None => Vec::new(),
                },
                otherwise: match &h.inverse {
                    Some(t) => self.template(t, scope)?,
                    None => Vec::new(),
                },
            }),
            "each" if scope == Scope::Event && matches!(condition, Expr::Field(..)) => {
                Ok(Step::Each {
                    list: condition,
                    body: match &h.template {
                        Some(t) => self.template(t, Scope::Item)?,
                        None => Vec::new(),
                    },
                    otherwise: match &h.inverse {
                        Some(t) => Some(self.template(t, scope)?),
                        None => None,
                    },
                })
            }
            other => unplanned(format!("`#{other}`")),
        }
    }

    fn param(&self, p: &Parameter, scope: Scope) -> Result<Expr, Unplanned> {
        match p {
            Parameter::Path(path) => self.hbs_path(path, scope),
            Parameter::Name(name) => self.path(name, scope),
            Parameter::Literal(value) => Ok(Expr::Literal(value.clone())),
            Parameter::Subexpression(sub) => match sub.as_element() {
                TemplateElement::Expression(h) => match &h.name {
                    Parameter::Name(name) if name == "json" => match &h.params[..] {
                        [value] if h.hash.is_empty() => {
                            Ok(Expr::JsonText(Box::new(self.param(value, scope)?)))
                        }
                        _ => unplanned("`json` with other than one argument"),
                    },
                    Parameter::Name(name)
                        if h.params.is_empty() && h.hash.is_empty() && !is_helper(name) =>
                    {
                        self.path(name, scope)
                    }
                    Parameter::Name(name) => self.call(name, &h.params, &h.hash, scope),
                    Parameter::Path(path) if h.params.is_empty() && h.hash.is_empty() => {
                        self.hbs_path(path, scope)
                    }
                    _ => unplanned("a subexpression that is neither a value nor a call"),
                },
                _ => unplanned("a subexpression that is not an expression"),
            },
            _ => unplanned("a parameter plans do not know"),
        }
    }

    fn hbs_path(&self, path: &HbsPath, scope: Scope) -> Result<Expr, Unplanned> {
        match path {
            HbsPath::Relative((_, raw)) => self.path(raw, scope),
            HbsPath::Local((0, name, _)) if scope == Scope::Item => {
                Ok(Expr::Item(match name.as_str() {
                    "index" => ItemPart::Index,
                    "first" => ItemPart::First,
                    "last" => ItemPart::Last,
                    other => return unplanned(format!("`@{other}`")),
                }))
            }
            HbsPath::Local((_, name, _)) => unplanned(format!("`@{name}` here")),
        }
    }

    /// A dotted name: a canonical field or group, a member of `data.extensions`, or the item.
    fn path(&self, raw: &str, scope: Scope) -> Result<Expr, Unplanned> {
        if scope == Scope::Item {
            return match raw {
                "this" | "." => Ok(Expr::Item(ItemPart::This)),
                other => unplanned(format!("`{other}` inside `#each`")),
            };
        }
        let plain = !raw.is_empty()
            && raw
                .split('.')
                .all(|seg| !seg.is_empty() && seg != "this" && !seg.contains(['/', '[', ']', '@']));
        if !plain {
            return unplanned(format!("the path `{raw}`"));
        }
        if let Some(rest) = raw
            .strip_prefix(schema::EXTENSIONS)
            .and_then(|r| r.strip_prefix('.'))
        {
            return Ok(Expr::Extension(
                rest.split('.').map(str::to_owned).collect(),
            ));
        }
        match fields::read(raw) {
            Some(read) => Ok(Expr::Field(read, raw.into())),
            None => unplanned(format!("`{raw}`, which is not a canonical field")),
        }
    }

    fn call(
        &self,
        name: &str,
        params: &[Parameter],
        hash: &HashMap<String, Parameter>,
        scope: Scope,
    ) -> Result<Expr, Unplanned> {
        if name == "obj" {
            if !params.is_empty() {
                return unplanned("`obj` with positional arguments");
            }
            let mut members = hash
                .iter()
                .map(|(k, v)| Ok((k.clone(), self.param(v, scope)?)))
                .collect::<Result<Vec<_>, Unplanned>>()?;
            members.sort_by(|a, b| a.0.cmp(&b.0));
            return Ok(Expr::Obj(members));
        }
        if !hash.is_empty() {
            return unplanned(format!("`{name}` with hash arguments"));
        }
        let helper = match name {
            "table" => {
                let Some(Parameter::Literal(Value::String(table))) = params.first() else {
                    return unplanned("`table` without a literal table name");
                };
                let Some(found) = self.tables.get(table) else {
                    return unplanned(format!("unknown table `{table}`"));
                };
                Helper::Table(found.clone())
            }
            "default" => Helper::Default,
            "number" => Helper::Number,
            "eq" => Helper::Eq,
            "ne" => Helper::Ne,
            "upper" => Helper::Upper,
            "lower" => Helper::Lower,
            "time_format" => Helper::TimeFormat,
            "guid" => Helper::Guid,
            "epoch_s" => Helper::EpochS,
            "epoch_ms" => Helper::EpochMs,
            "epoch_us" => Helper::EpochUs,
            "lookup" => Helper::Lookup,
            other => return unplanned(format!("the helper `{other}`")),
        };
        // The compile step checks arity; a plan never indexes past its arguments either way.
        match typecheck::arity(name) {
            Some((min, max)) if (min..=max).contains(&params.len()) => {}
            _ => return unplanned(format!("`{name}` with {} arguments", params.len())),
        }
        let args = match helper {
            // The table's name is resolved above.
            Helper::Table(..) => &params[1..],
            _ => params,
        };
        let args = args
            .iter()
            .map(|p| self.param(p, scope))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expr::Call(helper, args))
    }
}

/// A value while a plan runs: borrowed from the event or the plan where it can be.
#[derive(Debug, Clone)]
enum Val<'a> {
    /// Not in the event (strict mode refuses to write it).
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    Number(Cow<'a, Number>),
    Str(Cow<'a, str>),
    List(&'a [String]),
    /// A group of the event; `true` when it has no member.
    Group(bool),
    Json(&'a Value),
    Owned(Value),
    /// `(obj ...)`: members in the order the JSON object writes them.
    Object(Vec<(&'a str, Val<'a>)>),
}

impl<'a> Val<'a> {
    fn from_field(value: FieldValue<'a>) -> Val<'a> {
        match value {
            FieldValue::Text(s) => Val::Str(Cow::Borrowed(s)),
            // As serde_json writes an f64 (and a non-finite one as null).
            FieldValue::Number(n) => {
                Number::from_f64(n).map_or(Val::Null, |n| Val::Number(Cow::Owned(n)))
            }
            FieldValue::Bool(b) => Val::Bool(b),
            FieldValue::TextList(l) => Val::List(l),
            FieldValue::Group { empty } => Val::Group(empty),
        }
    }

    /// Neither missing nor null (the helpers' `present`).
    fn present(&self) -> bool {
        !matches!(self, Val::Missing | Val::Null)
            && !matches!(self, Val::Json(Value::Null) | Val::Owned(Value::Null))
    }

    /// The text as a string when the value is one.
    fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::Json(Value::String(s)) | Val::Owned(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// `handlebars`' `JsonRender`: strings as they are, numbers and booleans as text, null
    /// as nothing, a list as `[a, b]`, an object as `[object]`.
    fn render(&self) -> Cow<'_, str> {
        match self {
            Val::Missing | Val::Null => Cow::Borrowed(""),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Number(n) => Cow::Owned(n.to_string()),
            Val::Str(s) => Cow::Borrowed(s),
            Val::List(items) => Cow::Owned(format!("[{}]", items.join(", "))),
            Val::Group(_) | Val::Object(_) => Cow::Borrowed("[object]"),
            Val::Json(v) => match v {
                Value::String(s) => Cow::Borrowed(s),
                other => Cow::Owned(other.render()),
            },
            Val::Owned(v) => match v {
                Value::String(s) => Cow::Borrowed(s),
                other => Cow::Owned(other.render()),
            },
        }
    }

    /// `handlebars`' truthiness (`#if`): zero, empty text, list or object are false.
    fn truthy(&self) -> bool {
        match self {
            Val::Missing | Val::Null => false,
            Val::Bool(b) => *b,
            Val::Int(i) => (*i as f64).is_normal(),
            Val::Number(n) => n.as_f64().is_some_and(f64::is_normal),
            Val::Str(s) => !s.is_empty(),
            Val::List(items) => !items.is_empty(),
            Val::Group(empty) => !empty,
            Val::Json(v) => v.is_truthy(false),
            Val::Owned(v) => v.is_truthy(false),
            Val::Object(members) => !members.is_empty(),
        }
    }

    /// The value as `serde_json` holds it, for comparisons; a group is not rebuilt.
    fn to_value(&self) -> Result<Value, Refused> {
        Ok(match self {
            Val::Missing | Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Int(i) => Value::from(*i),
            Val::Number(n) => Value::Number(n.clone().into_owned()),
            Val::Str(s) => Value::String(s.to_string()),
            Val::List(items) => Value::from(items.to_vec()),
            Val::Group(_) => return Err(Refused),
            Val::Json(v) => (*v).clone(),
            Val::Owned(v) => v.clone(),
            Val::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| Ok((k.to_string(), v.to_value()?)))
                    .collect::<Result<_, Refused>>()?,
            ),
        })
    }

    /// The value as JSON text (`serde_json`'s compact form), as `{{json x}}` writes it.
    fn write_json(&self, out: &mut String) -> Result<(), Refused> {
        match self {
            Val::Missing | Val::Null => out.push_str("null"),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::Int(i) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{i}");
            }
            Val::Number(n) => out.push_str(&n.to_string()),
            Val::Str(s) => json_string(s, out),
            Val::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(item, out);
                }
                out.push(']');
            }
            Val::Group(_) => return Err(Refused),
            Val::Json(v) => write_value(v, out),
            Val::Owned(v) => write_value(v, out),
            Val::Object(members) => {
                out.push('{');
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(name, out);
                    out.push(':');
                    value.write_json(out)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }
}

/// A JSON value as serde_json's `to_string` writes it.
fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => json_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// A quoted JSON string, escaped as serde_json escapes it.
fn json_string(text: &str, out: &mut String) {
    out.push('"');
    json_escape_into(text, out);
    out.push('"');
}

/// The inside of a JSON string literal, as serde_json escapes it: `"`, `\` and control
/// characters only (`\b \t \n \f \r`, the others as `\u00XX` in lower-case hex).
fn json_escape_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
}

/// One run of a plan over one event.
struct Run<'a> {
    event: &'a CallEvent,
    escape: Escape,
}

/// The item of the `#each` being rendered: its text, index and the list's length.
type Item<'a> = Option<(&'a str, usize, usize)>;

impl<'a> Run<'a> {
    fn steps(&self, steps: &'a [Step], item: Item<'a>, out: &mut String) -> Result<(), Refused> {
        for step in steps {
            match step {
                Step::Raw(text) => out.push_str(text),
                Step::Write { value, escaped } => {
                    let value = self.eval(value, item)?;
                    if matches!(value, Val::Missing) {
                        // Strict mode: `handlebars` refuses to write a missing value.
                        return Err(Refused);
                    }
                    let text = value.render();
                    if *escaped {
                        self.write_escaped(&text, out);
                    } else {
                        out.push_str(&text);
                    }
                }
                Step::Json(value) => {
                    let value = self.eval(value, item)?;
                    if matches!(value, Val::Missing) {
                        return Err(Refused);
                    }
                    value.write_json(out)?;
                }
                Step::If {
                    condition,
                    negate,
                    then,
                    otherwise,
                } => {
                    let truth = self.eval(condition, item)?.truthy() != *negate;
                    self.steps(if truth { then } else { otherwise }, item, out)?;
                }
                Step::Each {
                    list,
                    body,
                    otherwise,
                } => match self.eval(list, item)? {
                    Val::List(items) if !items.is_empty() || otherwise.is_none() => {
                        for (index, text) in items.iter().enumerate() {
                            self.steps(body, Some((text, index, items.len())), out)?;
                        }
                    }
                    // `handlebars` walks an object's members: not planned.
                    Val::Group(_)
                    | Val::Object(_)
                    | Val::Json(Value::Array(_) | Value::Object(_))
                    | Val::Owned(Value::Array(_) | Value::Object(_)) => return Err(Refused),
                    _ => match otherwise {
                        Some(otherwise) => self.steps(otherwise, item, out)?,
                        // Strict mode: `#each` over nothing, without `{{else}}`, is an error.
                        None => return Err(Refused),
                    },
                },
            }
        }
        Ok(())
    }

    fn write_escaped(&self, text: &str, out: &mut String) {
        match self.escape {
            Escape::Json => json_escape_into(text, out),
            Escape::Percent => {
                for part in percent_encoding::utf8_percent_encode(text, QUERY_VALUE) {
                    out.push_str(part);
                }
            }
        }
    }

    fn eval(&self, expr: &'a Expr, item: Item<'a>) -> Result<Val<'a>, Refused> {
        Ok(match expr {
            Expr::Field(read, _) => read(self.event).map_or(Val::Missing, Val::from_field),
            Expr::Extension(segments) => {
                let mut at = self.event.data.extensions.get(&segments[0]);
                for seg in &segments[1..] {
                    at = at.and_then(|v| match v {
                        Value::Object(m) => m.get(seg),
                        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                        _ => None,
                    });
                }
                at.map_or(Val::Missing, Val::Json)
            }
            Expr::Literal(v) => Val::Json(v),
            Expr::Item(part) => match (item, part) {
                (Some((text, _, _)), ItemPart::This) => Val::Str(Cow::Borrowed(text)),
                (Some((_, index, _)), ItemPart::Index) => Val::Int(index as i64),
                (Some((_, index, _)), ItemPart::First) => Val::Bool(index == 0),
                (Some((_, index, len)), ItemPart::Last) => Val::Bool(index + 1 == len),
                (None, _) => Val::Missing,
            },
            Expr::Obj(members) => Val::Object(
                members
                    .iter()
                    .map(|(name, e)| Ok((name.as_str(), self.eval(e, item)?)))
                    .filter(|m| m.as_ref().map_or(true, |(_, v)| v.present()))
                    .collect::<Result<_, Refused>>()?,
            ),
            Expr::JsonText(inner) => {
                let value = self.eval(inner, item)?;
                if matches!(value, Val::Missing) {
                    return Err(Refused);
                }
                let mut text = String::new();
                value.write_json(&mut text)?;
                Val::Str(Cow::Owned(text))
            }
            Expr::Call(helper, args) => self.call(helper, args, item)?,
        })
    }

    fn call(
        &self,
        helper: &'a Helper,
        args: &'a [Expr],
        item: Item<'a>,
    ) -> Result<Val<'a>, Refused> {
        let arg = |i: usize| self.eval(&args[i], item);
        // A required argument: missing is an error (null is not).
        let required = |i: usize| match arg(i)? {
            Val::Missing => Err(Refused),
            v => Ok(v),
        };
        Ok(match helper {
            Helper::Table(table) => {
                let mut key = String::new();
                let mut any = false;
                for i in 0..args.len() {
                    if i > 0 {
                        key.push('/');
                    }
                    let part = arg(i)?;
                    if !part.present() {
                        continue;
                    }
                    key.push_str(&part.render());
                    any = true;
                }
                if !any {
                    return Ok(Val::Null);
                }
                if let Some(directory) = table.directory() {
                    return super::directory::lookup(directory, &key)
                        .map(Val::Owned)
                        .map_err(|_| Refused);
                }
                Val::Json(table.get(&key).ok_or(Refused)?)
            }
            Helper::Default => {
                let first = arg(0)?;
                if first.present() {
                    first
                } else {
                    let second = arg(1)?;
                    if second.present() { second } else { Val::Null }
                }
            }
            Helper::Number => {
                let value = arg(0)?;
                if !value.present() {
                    return Ok(Val::Null);
                }
                match value {
                    Val::Int(_) | Val::Number(_) | Val::Json(Value::Number(_)) => value,
                    Val::Owned(Value::Number(n)) => Val::Number(Cow::Owned(n)),
                    other => match other.as_str() {
                        Some(s) => Val::Number(Cow::Owned(parse_number(s).ok_or(Refused)?)),
                        None => return Err(Refused),
                    },
                }
            }
            Helper::Eq | Helper::Ne => {
                let (a, b) = (arg(0)?, arg(1)?);
                let same = match (a.present(), b.present()) {
                    (false, false) => true,
                    (true, true) => match (a.as_str(), b.as_str()) {
                        (Some(x), Some(y)) => x == y,
                        _ => a.to_value()? == b.to_value()?,
                    },
                    _ => false,
                };
                Val::Bool(same == matches!(helper, Helper::Eq))
            }
            Helper::Upper => Val::Str(Cow::Owned(required(0)?.render().to_uppercase())),
            Helper::Lower => Val::Str(Cow::Owned(required(0)?.render().to_lowercase())),
            Helper::Guid => {
                let value = arg(0)?;
                if value.present() {
                    Val::Str(Cow::Owned(guid_for(&value.render())))
                } else {
                    Val::Null
                }
            }
            Helper::TimeFormat => {
                let time = arg(0)?;
                if !time.present() {
                    return Ok(Val::Null);
                }
                let time = rfc3339(&time)?;
                let format = required(1)?;
                Val::Str(Cow::Owned(
                    format_time(time, &format.render()).ok_or(Refused)?,
                ))
            }
            Helper::EpochS => Val::Int(rfc3339(&required(0)?)?.timestamp()),
            Helper::EpochMs => Val::Int(rfc3339(&required(0)?)?.timestamp_millis()),
            Helper::EpochUs => Val::Int(rfc3339(&required(0)?)?.timestamp_micros()),
            Helper::Lookup => {
                let (collection, index) = (arg(0)?, arg(1)?);
                let at = match &index {
                    Val::Int(i) => u64::try_from(*i).ok(),
                    Val::Number(n) => n.as_u64(),
                    Val::Json(v) => v.as_u64(),
                    Val::Owned(v) => v.as_u64(),
                    _ => None,
                };
                match (&collection, at) {
                    (Val::List(items), Some(at)) => {
                        let found = items.get(at as usize).ok_or(Refused)?;
                        Val::Str(Cow::Borrowed(found))
                    }
                    // Lists of texts are all a plan reads; anything else: `handlebars`.
                    _ => return Err(Refused),
                }
            }
        })
    }
}

/// An argument read as an RFC 3339 time (`epoch_*`, `time_format`).
fn rfc3339(value: &Val<'_>) -> Result<chrono::DateTime<chrono::FixedOffset>, Refused> {
    chrono::DateTime::parse_from_rfc3339(&value.render()).map_err(|_| Refused)
}

/// JSON text (or a piece of it starting inside a string when `in_string`) without the
/// whitespace between tokens: strings are kept as written. Multi-byte characters never look
/// like `"` or `\`, so bytes are scanned.
pub(crate) fn strip_json_whitespace(text: &str, mut in_string: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escaped = false;
    let mut kept = 0;
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push_str(&text[kept..i]);
            kept = i + 1;
        } else {
            in_string = b == b'"';
        }
    }
    out.push_str(&text[kept..]);
    out
}

/// The load-time proof that a plan writes valid JSON, and the compaction of its text.
mod proof {
    use super::{Expr, Helper, Step, strip_json_whitespace};

    /// What a piece of one way through the plan writes.
    #[derive(Clone, Copy)]
    enum Piece {
        /// Template text, by its index among the plan's texts.
        Raw(usize),
        /// Escaped text: only inside a JSON string.
        Text,
        /// An integer (`epoch_*`): inside a string, or as a number token.
        Integer,
        /// A JSON value (`{{json x}}`): a whole value token, outside strings.
        Value,
    }

    /// Ways through the plan considered at most: beyond, nothing is proven.
    const MAX_WAYS: usize = 4096;

    /// Proves the plan writes valid JSON whatever the event, and if so removes the
    /// whitespace outside strings from its texts.
    pub(super) fn compact_json(steps: &mut [Step]) -> bool {
        let mut texts = Vec::new();
        let Some(ways) = expand(steps, &mut texts, &[]) else {
            return false;
        };
        // Whether each text starts inside a string: the same on every way, or no proof.
        let mut starts: Vec<Option<bool>> = vec![None; texts.len()];
        for way in &ways {
            for representative in [Representative::Zero, Representative::Other] {
                match skeleton(way, &texts, &mut starts, representative) {
                    Some(text) if valid(&text) => {}
                    _ => return false,
                }
            }
        }
        let mut index = 0;
        compact(steps, &starts, &mut index);
        true
    }

    /// The texts of the plan in order, and every way through it (`#if` both branches,
    /// `#each` zero, one and two times). `present`: the fields an enclosing `#if` found
    /// truthy (so present) on this way.
    fn expand(
        steps: &[Step],
        texts: &mut Vec<String>,
        present: &[&str],
    ) -> Option<Vec<Vec<Piece>>> {
        let mut ways: Vec<Vec<Piece>> = vec![Vec::new()];
        for step in steps {
            let choices: Vec<Vec<Piece>> = match step {
                Step::Raw(text) => {
                    texts.push(text.to_string());
                    vec![vec![Piece::Raw(texts.len() - 1)]]
                }
                Step::Write { escaped: false, .. } => return None,
                Step::Write { value, .. } => vec![vec![match value {
                    Expr::Call(Helper::EpochS | Helper::EpochMs | Helper::EpochUs, _) => {
                        Piece::Integer
                    }
                    // `number` of a present value writes a JSON number (or refuses).
                    Expr::Call(Helper::Number, args) if matches!(&args[..], [Expr::Field(_, name)] if present.contains(&&**name)) => {
                        Piece::Value
                    }
                    _ => Piece::Text,
                }]],
                Step::Json(_) => vec![vec![Piece::Value]],
                Step::If {
                    condition,
                    negate,
                    then,
                    otherwise,
                } => {
                    // A truthy field is present on the branch that runs when it is truthy.
                    let mut truthy = present.to_vec();
                    if let Expr::Field(_, name) = condition {
                        truthy.push(name);
                    }
                    let (when_then, when_otherwise) = if *negate {
                        (present, truthy.as_slice())
                    } else {
                        (truthy.as_slice(), present)
                    };
                    let mut both = expand(then, texts, when_then)?;
                    both.extend(expand(otherwise, texts, when_otherwise)?);
                    if both.len() > MAX_WAYS {
                        return None;
                    }
                    both
                }
                Step::Each {
                    body, otherwise, ..
                } => {
                    let once = expand(body, texts, present)?;
                    // Two iterations pair every way with every way: bounded before it is built.
                    if once.len() * once.len() > MAX_WAYS {
                        return None;
                    }
                    let mut choices = vec![Vec::new()];
                    if let Some(otherwise) = otherwise {
                        choices.extend(expand(otherwise, texts, present)?);
                    }
                    for a in &once {
                        choices.push(a.clone());
                        for b in &once {
                            choices.push([a.as_slice(), b.as_slice()].concat());
                        }
                    }
                    choices
                }
            };
            if ways.len() * choices.len() > MAX_WAYS {
                return None;
            }
            ways = ways
                .iter()
                .flat_map(|way| {
                    choices
                        .iter()
                        .map(move |choice| [way.as_slice(), choice.as_slice()].concat())
                })
                .collect();
        }
        Some(ways)
    }

    /// Which stand-ins a skeleton writes for integers and values: between them they make any
    /// token that would run into the template's text (`1{{json x}}`, `{{epoch_s t}}5`) fail.
    #[derive(Clone, Copy)]
    enum Representative {
        /// `0` for both.
        Zero,
        /// `-1` for an integer, `""` for a value.
        Other,
    }

    /// One way's text with stand-ins for what the event writes, or `None` when a piece
    /// stands where it could break the JSON; records where each text starts.
    fn skeleton(
        way: &[Piece],
        texts: &[String],
        starts: &mut [Option<bool>],
        representative: Representative,
    ) -> Option<String> {
        let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
        for piece in way {
            match piece {
                Piece::Raw(index) => {
                    if escaped || starts[*index].is_some_and(|start| start != in_string) {
                        return None;
                    }
                    starts[*index] = Some(in_string);
                    for b in texts[*index].bytes() {
                        if in_string {
                            match (escaped, b) {
                                (true, _) => escaped = false,
                                (false, b'\\') => escaped = true,
                                (false, b'"') => in_string = false,
                                _ => {}
                            }
                        } else if b == b'"' {
                            in_string = true;
                        }
                    }
                    out.push_str(&texts[*index]);
                }
                Piece::Text if in_string && !escaped => out.push('a'),
                Piece::Integer if in_string && !escaped => out.push('1'),
                Piece::Integer if !in_string => out.push_str(match representative {
                    Representative::Zero => "0",
                    Representative::Other => "-1",
                }),
                Piece::Value if !in_string => out.push_str(match representative {
                    Representative::Zero => "0",
                    Representative::Other => "\"\"",
                }),
                _ => return None,
            }
        }
        Some(out)
    }

    fn valid(text: &str) -> bool {
        use serde::Deserialize as _;
        let mut input = serde_json::Deserializer::from_str(text);
        serde::de::IgnoredAny::deserialize(&mut input).is_ok() && input.end().is_ok()
    }

    /// Removes JSON whitespace outside strings from each text, knowing where it starts.
    fn compact(steps: &mut [Step], starts: &[Option<bool>], index: &mut usize) {
        for step in steps {
            match step {
                Step::Raw(text) => {
                    let in_string = starts[*index].unwrap_or(false);
                    *index += 1;
                    *text = strip_json_whitespace(text, in_string).into();
                }
                Step::If {
                    then, otherwise, ..
                } => {
                    compact(then, starts, index);
                    compact(otherwise, starts, index);
                }
                Step::Each {
                    body, otherwise, ..
                } => {
                    compact(body, starts, index);
                    if let Some(otherwise) = otherwise {
                        compact(otherwise, starts, index);
                    }
                }
                Step::Write { .. } | Step::Json(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proven(text: &str) -> bool {
        let template = Template::compile(text).unwrap();
        RenderPlan::compile(&template, &HashMap::new(), Escape::Json)
            .unwrap()
            .writes_compact_json()
    }

    #[test]
    fn the_json_proof_accepts_only_what_is_valid_for_every_event() {
        for ok in [
            r#"{ "a": "{{id}}", "b": {{json data.call}} }"#,
            r#"{"t": {{#if time}}{{epoch_ms time}}{{else}}0{{/if}}, "s": "x {{type}} y"}"#,
            r#"{"u": "{{#each data.recording.urls}}{{this}};{{/each}}"}"#,
            r#"{"a": {{json (obj x=id)}} }"#,
            r#"{"n": {{#if sequence}}{{number sequence}}{{else}}0{{/if}} }"#,
            r#"{"n": {{#unless sequence}}0{{else}}{{number sequence}}{{/unless}} }"#,
        ] {
            assert!(proven(ok), "{ok}");
        }
        for not in [
            r#"{"a": {{id}}}"#,
            r#"{"a": 1{{json id}}}"#,
            r#"{"a": {{json id}}5}"#,
            r#"{"a": {{epoch_s time}}5}"#,
            r#"{"a": "{{json id}}"}"#,
            r#"{"a": "\\{{id}}"}"#,
            r#"{"a": {{{id}}}}"#,
            r#"{"n": {{number sequence}} }"#,
            r#"{"n": {{#if time}}{{number sequence}}{{else}}0{{/if}} }"#,
            r#"{"n": {{#unless sequence}}{{number sequence}}{{/unless}} }"#,
            r#"{"a": 1{{#if id}}, "b": 2{{/if}}"#,
            r#"[{{#each data.recording.urls}}"{{this}}"{{/each}}]"#,
            r#"[{{#each data.recording.urls}}"{{this}}"{{#unless @last}},{{/unless}}{{/each}}]"#,
        ] {
            assert!(!proven(not), "{not}");
        }
    }

    /// The proof follows at most 4,096 ways through a template: one whose every way is valid
    /// is proven up to that, and left unproven (parsed after rendering) beyond it.
    #[test]
    fn the_proof_gives_up_on_templates_with_too_many_ways() {
        let proven = |text: &str| {
            let template = Template::compile(text).unwrap();
            RenderPlan::compile(&template, &HashMap::new(), Escape::Json)
                .is_ok_and(|p| p.writes_compact_json())
        };
        let ifs = |n: usize| format!("[\"{}\"]", "{{#if id}}a{{else}}b{{/if}}".repeat(n));
        assert!(proven(&ifs(12)), "2^12 ways, each valid");
        assert!(!proven(&ifs(13)), "2^13 ways: beyond the bound");
        // 4,096 ways through the body, which two iterations would pair into 16 million.
        let body = "{{#if @first}}a{{else}}b{{/if}}".repeat(12);
        assert!(!proven(&format!(
            "[\"{{{{#each data.recording.urls}}}}{body}{{{{/each}}}}\"]"
        )));
    }

    #[test]
    fn proven_text_is_compacted_outside_strings_only() {
        let template = Template::compile("{ \"a b\" :\n \"{{id}} \" }").unwrap();
        let plan = RenderPlan::compile(&template, &HashMap::new(), Escape::Json).unwrap();
        assert!(plan.writes_compact_json());
        let event: CallEvent = serde_json::from_value(serde_json::json!({
            "specversion": "1.0", "id": "x y", "source": "/s", "type": "call.ended",
            "data": {"vendor": "v"}
        }))
        .unwrap();
        let mut out = String::new();
        plan.render(&event, &mut out).unwrap();
        assert_eq!(out, r#"{"a b":"x y "}"#);
    }

    #[test]
    fn json_escaping_is_serde_jsons() {
        for text in [
            "",
            "plain",
            "a\"b\\c",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
            "ü😀/",
        ] {
            let mut out = String::new();
            json_string(text, &mut out);
            assert_eq!(out, serde_json::to_string(text).unwrap());
        }
    }
}
