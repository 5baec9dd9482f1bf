//! Templates compiled against the canonical schema (README "Mapping authoring guide"): every name a template reads
//! — in `{{x}}`, helper arguments, hash arguments, sub-expressions and block conditions — must
//! be a canonical field or group, every helper is known and called with its arity, every table
//! exists and every table lookup covers the canonical values that can reach it.
//!
//! Templates are walked as handlebars' own parser gives them (`handlebars::template`), never
//! re-parsed here. Problems name the template file, line and column, and the nearest valid name.

use super::Problem;
use super::table::Table;
use crate::model::event::CANONICAL_TYPES;
use crate::model::schema::{self, FieldKind};
use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{JsonRender, Path as HbsPath};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// A helper callgate registers, with the number of positional arguments it takes.
struct Signature {
    name: &'static str,
    min: usize,
    max: usize,
    /// What it does, for the "unknown helper" message.
    block: bool,
}

const fn helper(name: &'static str, min: usize, max: usize) -> Signature {
    Signature {
        name,
        min,
        max,
        block: false,
    }
}

const fn block(name: &'static str) -> Signature {
    Signature {
        name,
        min: 1,
        max: 1,
        block: true,
    }
}

/// Every helper a template may call (callgate's, and the handlebars built-ins mappings use).
const HELPERS: &[Signature] = &[
    helper("json", 1, 1),
    helper("obj", 0, 0),
    helper("table", 2, usize::MAX),
    helper("default", 2, 2),
    helper("number", 1, 1),
    helper("eq", 2, 2),
    helper("ne", 2, 2),
    helper("upper", 1, 1),
    helper("lower", 1, 1),
    helper("time_format", 2, 2),
    helper("guid", 1, 1),
    helper("epoch_s", 1, 1),
    helper("epoch_ms", 1, 1),
    helper("epoch_us", 1, 1),
    helper("lookup", 2, 2),
    block("if"),
    block("unless"),
    block("each"),
    block("with"),
];

/// The absent value of a lookup key part: the `table` helper joins a missing part as empty text.
const ABSENT: &str = "";

/// What `this` is at a point of the template.
#[derive(Debug, Clone, PartialEq)]
enum Context {
    /// The event (or a group of it: the dotted prefix, empty for the event itself).
    Group(String),
    /// One text of a list (`#each data.recording.urls`).
    Text,
    /// Something the schema does not describe (inside `data.extensions`): not checked.
    Open,
}

/// What is known of values at a point: narrowed domains, by dotted path (`type` → the
/// types that reach here; an enum field → the values it can have here, "" meaning absent).
type Facts = BTreeMap<String, Vec<String>>;

/// Checks one template; problems go to `problems`.
pub(crate) struct TemplateCheck<'a> {
    /// The template file, for problems.
    pub file: &'a Path,
    /// The template's text: a problem inside an expression is placed on the token at fault.
    pub source: &'a str,
    /// The vendor's tables.
    pub tables: &'a HashMap<String, Arc<Table>>,
    /// The canonical types this template renders (from `types:`, expanded).
    pub types: Vec<String>,
    /// Where problems go.
    pub problems: &'a mut Vec<Problem>,
    /// Every canonical field the template reads (dotted paths), filled as it is checked.
    pub reads: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl TemplateCheck<'_> {
    /// Walks a parsed template.
    pub fn run(&mut self, template: &Template) {
        let mut facts = Facts::new();
        facts.insert("type".into(), self.types.clone());
        self.template(template, &[Context::Group(String::new())], &facts);
    }

    /// A problem about `token`, placed where the token first appears at or after `at` (the
    /// start of its expression: handlebars keeps positions per expression, not per argument).
    fn problem_near(&mut self, at: (usize, usize), token: &str, message: String) {
        let at = locate(self.source, at, token).unwrap_or(at);
        self.problem(at, message);
    }

    fn problem(&mut self, at: (usize, usize), message: String) {
        let problem = Problem::at(self.file, at.0 as u64, message).column(at.1 as u64);
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    fn template(&mut self, template: &Template, scopes: &[Context], facts: &Facts) {
        for (index, element) in template.elements.iter().enumerate() {
            let at = template.mapping.get(index).map_or((0, 0), |m| (m.0, m.1));
            match element {
                TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                    self.expression(h, at, scopes, facts);
                }
                TemplateElement::HelperBlock(h) => self.block(h, at, scopes, facts),
                _ => self.problem(
                    at,
                    "partials and decorators are not supported in mapping templates".into(),
                ),
            }
        }
    }

    /// `{{x}}` or `{{helper args}}`.
    fn expression(
        &mut self,
        h: &HelperTemplate,
        at: (usize, usize),
        scopes: &[Context],
        facts: &Facts,
    ) {
        match &h.name {
            Parameter::Name(name)
                if h.params.is_empty() && h.hash.is_empty() && !is_helper(name) =>
            {
                self.path_name(name, at, scopes);
            }
            Parameter::Name(name) => {
                self.call(name, &h.params, &h.hash, at, scopes, facts);
            }
            Parameter::Path(path) => {
                if !h.params.is_empty() || !h.hash.is_empty() {
                    self.problem(at, format!("`{}` is not a helper", raw(path)));
                }
                self.path(path, at, scopes);
            }
            Parameter::Subexpression(sub) => self.subexpression(sub, at, scopes, facts),
            _ => {}
        }
    }

    fn block(&mut self, h: &HelperTemplate, at: (usize, usize), scopes: &[Context], facts: &Facts) {
        let Some(name) = h.name.as_name() else {
            self.problem(
                at,
                "a block must name a helper (`#if`, `#each`, ...)".into(),
            );
            return;
        };
        let signature = HELPERS.iter().find(|s| s.name == name);
        match signature {
            Some(s) if s.block => {}
            Some(_) => {
                self.problem(
                    at,
                    format!("`{name}` is not a block helper: write `{{{{{name} ...}}}}`"),
                );
                return;
            }
            None => {
                self.unknown_helper(name, at);
                return;
            }
        }
        self.arity(name, h.params.len(), at);
        for value in h.hash.values() {
            self.param(value, at, scopes, facts);
        }
        let Some(condition) = h.params.first() else {
            return;
        };
        self.param(condition, at, scopes, facts);
        let (mut inner, mut otherwise) = (facts.clone(), facts.clone());
        let mut inner_scopes = scopes.to_vec();
        match name {
            "if" | "unless" => {
                narrow(condition, &mut inner, &mut otherwise);
                if name == "unless" {
                    std::mem::swap(&mut inner, &mut otherwise);
                }
            }
            "each" | "with" => {
                let context = match condition {
                    Parameter::Path(p) => self.resolve(p, scopes).map(|(c, _)| c),
                    _ => None,
                };
                let context = match context {
                    Some(full)
                        if name == "each"
                            && schema::field_at(&full)
                                .is_some_and(|f| f.kind == FieldKind::TextList) =>
                    {
                        Context::Text
                    }
                    Some(full) if full.starts_with(schema::EXTENSIONS) => Context::Open,
                    Some(full) if name == "with" && schema::is_group(&full) => Context::Group(full),
                    Some(full) => {
                        self.problem(
                            at,
                            format!(
                                "`#{name}` over `{full}`, which is not a {}",
                                if name == "each" { "list" } else { "group" }
                            ),
                        );
                        Context::Open
                    }
                    None => Context::Open,
                };
                inner_scopes.push(context);
            }
            _ => {}
        }
        if let Some(t) = &h.template {
            self.template(t, &inner_scopes, &inner);
        }
        if let Some(t) = &h.inverse {
            self.template(t, scopes, &otherwise);
        }
    }

    fn subexpression(
        &mut self,
        sub: &handlebars::template::Subexpression,
        at: (usize, usize),
        scopes: &[Context],
        facts: &Facts,
    ) {
        if let TemplateElement::Expression(h) = sub.as_element() {
            match &h.name {
                Parameter::Name(name)
                    if h.params.is_empty() && h.hash.is_empty() && !is_helper(name) =>
                {
                    self.path_name(name, at, scopes)
                }
                Parameter::Name(name) => self.call(name, &h.params, &h.hash, at, scopes, facts),
                Parameter::Path(path) => self.path(path, at, scopes),
                _ => {}
            }
        }
    }

    fn param(&mut self, p: &Parameter, at: (usize, usize), scopes: &[Context], facts: &Facts) {
        match p {
            Parameter::Path(path) => self.path(path, at, scopes),
            Parameter::Name(name) => self.path_name(name, at, scopes),
            Parameter::Subexpression(sub) => self.subexpression(sub, at, scopes, facts),
            _ => {}
        }
    }

    fn unknown_helper(&mut self, name: &str, at: (usize, usize)) {
        let names = HELPERS.iter().map(|s| s.name);
        let hint = schema::suggestion(name, names.clone());
        let list: Vec<&str> = names.collect();
        self.problem_near(
            at,
            name,
            format!(
                "unknown helper `{name}`{hint}; the helpers are {}",
                list.join(", ")
            ),
        );
    }

    fn arity(&mut self, name: &str, given: usize, at: (usize, usize)) {
        let Some(s) = HELPERS.iter().find(|s| s.name == name) else {
            return;
        };
        if given < s.min || given > s.max {
            let wants = match (s.min, s.max) {
                (min, max) if min == max => format!("{min}"),
                (min, usize::MAX) => format!("at least {min}"),
                (min, max) => format!("{min} to {max}"),
            };
            self.problem_near(
                at,
                name,
                format!(
                    "`{name}` takes {wants} argument{}, given {given}",
                    if wants == "1" { "" } else { "s" }
                ),
            );
        }
    }

    fn call(
        &mut self,
        name: &str,
        params: &[Parameter],
        hash: &HashMap<String, Parameter>,
        at: (usize, usize),
        scopes: &[Context],
        facts: &Facts,
    ) {
        match HELPERS.iter().find(|s| s.name == name) {
            None => {
                self.unknown_helper(name, at);
                return;
            }
            Some(s) if s.block => {
                self.problem(
                    at,
                    format!(
                        "`{name}` is a block helper: write `{{{{#{name} ...}}}}...{{{{/{name}}}}}`"
                    ),
                );
                return;
            }
            Some(_) => {}
        }
        self.arity(name, params.len(), at);
        if name != "obj" && !hash.is_empty() {
            self.problem(at, format!("`{name}` takes no `name=value` arguments"));
        }
        for p in params {
            self.param(p, at, scopes, facts);
        }
        for p in hash.values() {
            self.param(p, at, scopes, facts);
        }
        match name {
            "table" => self.table(params, at, scopes, facts),
            "time_format" => {
                if let Some(Parameter::Literal(format)) = params.get(1)
                    && let Err(e) = super::value::check_strftime(&format.render())
                {
                    self.problem_near(at, &format.render(), format!("`time_format`: {e}"));
                }
            }
            _ => {}
        }
    }

    /// `table "name" key...`: the table exists, and covers every key the canonical values
    /// reaching this point can form.
    fn table(
        &mut self,
        params: &[Parameter],
        at: (usize, usize),
        scopes: &[Context],
        facts: &Facts,
    ) {
        let name = match params.first() {
            Some(Parameter::Literal(v)) if v.is_string() => v.render(),
            Some(_) => {
                self.problem(
                    at,
                    "`table`: the table name must be a quoted literal (`table \"name\" ...`)"
                        .into(),
                );
                return;
            }
            None => return,
        };
        let Some(table) = self.tables.get(&name) else {
            let hint = schema::suggestion(&name, self.tables.keys().map(String::as_str));
            self.problem_near(
                at,
                &format!("\"{name}\""),
                format!("unknown table `{name}` (not in tables.yaml){hint}"),
            );
            return;
        };
        // A directory's keys are the ops' data, not the mapping's: a miss skips the destination.
        if table.has_default() || table.directory().is_some() {
            return;
        }
        // Each key part's possible values; `None` for free text (not enumerable).
        let parts: Vec<Option<Vec<String>>> = params[1..]
            .iter()
            .map(|p| match p {
                Parameter::Literal(v) => Some(vec![v.render()]),
                Parameter::Path(path) => {
                    let full = self.resolve(path, scopes).map(|(full, _)| full)?;
                    domain(&full, facts)
                }
                Parameter::Name(n) if !is_helper(n) => {
                    let full = self.resolve_name(n, scopes)?;
                    domain(&full, facts)
                }
                _ => None,
            })
            .collect();
        if parts.iter().all(Option::is_none) {
            return;
        }
        let mut missing = Vec::new();
        let mut combos: Vec<Vec<String>> = vec![Vec::new()];
        for (index, part) in parts.iter().enumerate() {
            let choices = match part {
                Some(values) => values.clone(),
                None => table.texts_at(index, parts.len()),
            };
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    choices.iter().map(move |v| {
                        let mut next = c.clone();
                        next.push(v.clone());
                        next
                    })
                })
                .collect();
            if combos.len() > 100_000 {
                return;
            }
        }
        // Free parts are satisfied by any of their texts: group by the enumerable parts.
        let mut covered: BTreeMap<Vec<String>, bool> = BTreeMap::new();
        for combo in combos {
            if combo.iter().all(|p| p == ABSENT) {
                continue; // every part missing: the helper yields nothing, no lookup
            }
            let key = combo.join("/");
            let shape: Vec<String> = combo
                .iter()
                .zip(&parts)
                .map(|(v, p)| if p.is_some() { v.clone() } else { "*".into() })
                .collect();
            let hit = table.get(&key).is_some();
            *covered.entry(shape).or_insert(false) |= hit;
        }
        for (shape, hit) in covered {
            if !hit {
                missing.push(shape.join("/"));
            }
        }
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(4).map(|k| format!("`{k}`")).collect();
            let more = if missing.len() > 4 {
                format!(" and {} more", missing.len() - 4)
            } else {
                String::new()
            };
            self.problem_near(
                at,
                &format!("\"{name}\""),
                format!(
                    "table `{name}` has no entry for {}{more} and no `default`: canonical values \
                     that reach this lookup (the types of this template's `types:`, the enum \
                     values of its arguments; an empty part is an absent value) would fail at \
                     run time",
                    shown.join(", ")
                ),
            );
        }
    }

    fn path_name(&mut self, name: &str, at: (usize, usize), scopes: &[Context]) {
        if self.resolve_name(name, scopes).is_none() {
            self.unknown_name(name, at, scopes);
        }
    }

    fn path(&mut self, path: &HbsPath, at: (usize, usize), scopes: &[Context]) {
        match path {
            HbsPath::Local((_, name, raw)) => {
                let in_each = scopes.len() > 1;
                let known = matches!(name.as_str(), "index" | "first" | "last" | "key" | "root");
                if !known || !in_each {
                    self.problem(
                        at,
                        format!("`{raw}` is only defined inside `#each` (`@index`, `@first`, `@last`, `@key`)"),
                    );
                }
            }
            HbsPath::Relative(_) => {
                if self.resolve(path, scopes).is_none() {
                    self.unknown_name(raw(path), at, scopes);
                }
            }
        }
    }

    fn unknown_name(&mut self, name: &str, at: (usize, usize), scopes: &[Context]) {
        let (scope, rest) = split_scope(name, scopes);
        let message = match scope {
            Some(Context::Text) => {
                format!("`{name}`: inside `#each` over a list of texts only `this` is defined")
            }
            Some(Context::Group(prefix)) => {
                let full = join(&prefix, &rest);
                let names = schema::readable_names();
                let hint = schema::suggestion(&full, names.iter().copied());
                format!(
                    "`{full}` is not a field of the canonical model{hint} (`callgate schema` lists them)"
                )
            }
            Some(Context::Open) => return,
            None => format!("`{name}` climbs out of the template (too many `../`)"),
        };
        self.problem_near(at, name, message);
    }

    /// The full dotted path a template path names, and whether it is a field, or `None` when
    /// it names nothing of the schema.
    fn resolve(&self, path: &HbsPath, scopes: &[Context]) -> Option<(String, bool)> {
        match path {
            HbsPath::Relative(_) => self.resolve_name(raw(path), scopes).map(|full| {
                let is_field = schema::field_at(&full).is_some();
                (full, is_field)
            }),
            HbsPath::Local(_) => None,
        }
    }

    fn resolve_name(&self, name: &str, scopes: &[Context]) -> Option<String> {
        let (scope, rest) = split_scope(name, scopes);
        match scope? {
            Context::Group(prefix) => {
                let full = join(&prefix, &rest);
                if schema::field_at(&full).is_some() {
                    self.reads.borrow_mut().insert(full.clone());
                }
                (full.is_empty() || schema::is_readable(&full)).then_some(full)
            }
            Context::Text => rest.is_empty().then(String::new),
            Context::Open => Some(format!("{}.*", schema::EXTENSIONS)),
        }
    }
}

/// The line and column of `token`'s first occurrence at or after `at` (1-based) in `source`.
fn locate(source: &str, at: (usize, usize), token: &str) -> Option<(usize, usize)> {
    if token.is_empty() || at.0 == 0 {
        return None;
    }
    let mut offset = 0;
    for (index, line) in source.split_inclusive('\n').enumerate() {
        if index + 1 == at.0 {
            offset += line
                .char_indices()
                .nth(at.1.saturating_sub(1))
                .map_or(0, |(i, _)| i);
            break;
        }
        offset += line.len();
    }
    let found = offset + source.get(offset..)?.find(token)?;
    let before = &source[..found];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    Some((line, column))
}

/// Whether `name` is a helper a template may call (callgate's or a handlebars built-in):
/// `{{name}}` then calls it rather than reading a field.
pub(crate) fn is_helper(name: &str) -> bool {
    HELPERS.iter().any(|s| s.name == name)
}

/// The positional arguments a (non-block) helper takes, `(min, max)`.
pub(crate) fn arity(name: &str) -> Option<(usize, usize)> {
    HELPERS
        .iter()
        .find(|s| s.name == name && !s.block)
        .map(|s| (s.min, s.max))
}

fn raw(path: &HbsPath) -> &str {
    match path {
        HbsPath::Relative((_, raw)) | HbsPath::Local((_, _, raw)) => raw,
    }
}

/// Which scope a raw path reads (`../` climbs, `@root` goes to the event) and its dotted rest.
fn split_scope(name: &str, scopes: &[Context]) -> (Option<Context>, String) {
    let mut rest = name;
    let mut depth = scopes.len();
    if let Some(r) = rest.strip_prefix("@root") {
        depth = 1;
        rest = r.trim_start_matches(['.', '/']);
    }
    while let Some(r) = rest.strip_prefix("../") {
        depth = depth.saturating_sub(1);
        rest = r;
    }
    for prefix in ["this.", "this/", "./"] {
        if let Some(r) = rest.strip_prefix(prefix) {
            rest = r;
        }
    }
    if rest == "this" || rest == "." {
        rest = "";
    }
    let dotted = rest
        .split(['.', '/'])
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
        .collect::<Vec<_>>()
        .join(".");
    let scope = depth.checked_sub(1).and_then(|d| scopes.get(d)).cloned();
    (scope, dotted)
}

fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// The values `path` can have here: `type` → the types reaching this point; an enum or bool
/// field → its values or absent; `None` for free text.
fn domain(path: &str, facts: &Facts) -> Option<Vec<String>> {
    let base: Vec<String> = if path == "type" {
        facts.get("type").cloned().unwrap_or_default()
    } else {
        let field = schema::field_at(path)?;
        let mut values: Vec<String> = field.kind.domain()?.iter().map(|v| v.to_string()).collect();
        values.push(ABSENT.into());
        values
    };
    Some(match facts.get(path) {
        Some(known) if path != "type" => base.into_iter().filter(|v| known.contains(v)).collect(),
        _ => base,
    })
}

/// Narrows what is known in the two branches of `#if condition`: `(eq path "x")` makes `path`
/// `x` in the first and anything else in the second; a plain path is present in the first.
fn narrow(condition: &Parameter, then: &mut Facts, otherwise: &mut Facts) {
    let path_of = |p: &Parameter| match p {
        Parameter::Path(path) => Some(raw(path).replace('/', ".")),
        Parameter::Name(n) => Some(n.clone()),
        _ => None,
    };
    let all = |path: &str, facts: &Facts| -> Option<Vec<String>> { domain(path, facts) };
    match condition {
        Parameter::Subexpression(sub) => {
            let TemplateElement::Expression(h) = sub.as_element() else {
                return;
            };
            let Some(op @ ("eq" | "ne")) = h.name.as_name() else {
                return;
            };
            let (Some(p), Some(Parameter::Literal(v))) =
                (h.params.first().and_then(path_of), h.params.get(1))
            else {
                return;
            };
            let value = v.render();
            let Some(values) = all(&p, then) else {
                return;
            };
            let (same, rest): (Vec<String>, Vec<String>) =
                values.into_iter().partition(|x| *x == value);
            let (a, b) = if op == "eq" {
                (same, rest)
            } else {
                (rest, same)
            };
            then.insert(p.clone(), a);
            otherwise.insert(p, b);
        }
        other => {
            if let Some(p) = path_of(other)
                && let Some(values) = all(&p, then)
            {
                let (absent, present): (Vec<String>, Vec<String>) =
                    values.into_iter().partition(|x| x == ABSENT);
                if p != "type" {
                    then.insert(p.clone(), present);
                    otherwise.insert(p, absent);
                }
            }
        }
    }
}

/// The canonical types a `types:` list selects: every canonical type a pattern matches, and
/// vendor patterns (`vendor.ringcentral.*`) as a representative of their events. `Err` names
/// a pattern that matches nothing.
pub(crate) fn expand_types(patterns: &[String]) -> Result<Vec<String>, String> {
    let mut types = Vec::new();
    for pattern in patterns {
        let matched: Vec<&str> = CANONICAL_TYPES
            .iter()
            .copied()
            .filter(|t| super::encode::type_matches(pattern, t))
            .collect();
        let vendor = pattern == "vendor.*"
            || (pattern.starts_with("vendor.")
                && schema::is_event_type(&pattern.replace('*', "X")));
        if matched.is_empty() && !vendor {
            let hint = schema::suggestion(pattern, CANONICAL_TYPES.iter().copied());
            return Err(format!(
                "`types` pattern `{pattern}` matches no canonical type{hint} (types: {}, or vendor.<vendor>.<EventName>; `*` at the end matches any suffix)",
                CANONICAL_TYPES.join(", ")
            ));
        }
        for t in matched {
            if !types.iter().any(|x| x == t) {
                types.push(t.to_string());
            }
        }
        if vendor {
            types.push(pattern.replace('*', "Event"));
        }
    }
    Ok(types)
}
