//! From the YAML tree to a [`Policy`]: checks the schema (keys, types, values) and turns
//! every name into its number, collecting every problem instead of stopping at the first.
//!
//! The schema is strict everywhere (what `#[serde(deny_unknown_fields)]` would do): an
//! unknown or repeated key is an error. A list key also takes a single scalar; an empty
//! list is an error (it would match nothing; leave the key out to match anything).

use std::{collections::HashMap, path::PathBuf};

use fwctl_common::{
    effects::effect,
    model::{class, driver, scope},
};

use super::{
    diag::Diagnostic,
    json_schema, names,
    resolved::{Action, Match, Mode, OnToctou, OpcodeSel, Policy, Rule, SCHEMA_VERSION},
    values,
    yaml::{Node, Value},
};

/// Where names that refer to the running host are looked up.
#[derive(Debug, Clone)]
pub struct Host {
    /// The cgroup v2 mount (`/sys/fs/cgroup`); `cgroup:` paths are below it.
    pub cgroup_root: PathBuf,
}

impl Default for Host {
    fn default() -> Self {
        Self { cgroup_root: PathBuf::from("/sys/fs/cgroup") }
    }
}

// The keys each mapping takes, from the document types the JSON Schema is generated from.
fn top_keys() -> &'static [&'static str] {
    json_schema::keys::<json_schema::PolicyDoc>()
}
fn rule_keys() -> &'static [&'static str] {
    json_schema::keys::<json_schema::RuleDoc>()
}
/// `not` is last: a `not` block takes every key but the last.
fn match_keys() -> &'static [&'static str] {
    json_schema::keys::<json_schema::MatchDoc>()
}
fn effects_keys() -> &'static [&'static str] {
    json_schema::keys::<json_schema::EffectsDoc>()
}

/// Check `root` against the schema and resolve it. The policy comes back only when there
/// are no errors; the diagnostics are every error found (no warnings: see `lint`).
pub fn resolve(root: &Node, host: &Host) -> (Option<Policy>, Vec<Diagnostic>) {
    let (part, diags) = resolve_part(root, host, true);
    let policy = part.and_then(|p| p.into_policy(&mut Vec::new()));
    (policy, diags)
}

/// [`resolve`] for one file of a policy directory (`whole` false): header keys may be
/// absent, since another file may set them. Errors as for [`resolve`].
pub fn resolve_part(root: &Node, host: &Host, whole: bool) -> (Option<Part>, Vec<Diagnostic>) {
    let mut cx = Cx { host, diags: Vec::new() };
    let part = cx.part(root, whole);
    let part = if cx.diags.is_empty() { part } else { None };
    (part, cx.diags)
}

/// The header keys of a policy (every top-level key but `version` and `rules`).
pub const HEADER_KEYS: &[&str] = &["name", "mode", "default", "on_undecodable", "on_toctou"];
/// Header keys a policy must set.
pub const HEADER_REQUIRED: &[&str] = &["name", "mode", "default"];

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
    pub column: usize,
}

/// The header keys one file sets.
#[derive(Debug, Clone, Default)]
pub struct Header {
    pub name: Option<Located<String>>,
    pub mode: Option<Located<Mode>>,
    pub default: Option<Located<Action>>,
    pub on_undecodable: Option<Located<Action>>,
    pub on_toctou: Option<Located<OnToctou>>,
}

impl Header {
    /// Where each key this header sets was written, in [`HEADER_KEYS`] order.
    pub fn positions(&self) -> Vec<(&'static str, usize, usize)> {
        fn at<T>(key: &'static str, v: &Option<Located<T>>) -> Option<(&'static str, usize, usize)> {
            v.as_ref().map(|l| (key, l.line, l.column))
        }
        [
            at("name", &self.name),
            at("mode", &self.mode),
            at("default", &self.default),
            at("on_undecodable", &self.on_undecodable),
            at("on_toctou", &self.on_toctou),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// One file's contribution to a policy.
#[derive(Debug, Clone)]
pub struct Part {
    pub header: Header,
    pub rules: Vec<Rule>,
}

impl Part {
    /// The policy, when the header has every required key; else the missing keys are
    /// pushed to `missing`.
    pub fn into_policy(self, missing: &mut Vec<&'static str>) -> Option<Policy> {
        let h = self.header;
        for (key, set) in
            [("name", h.name.is_some()), ("mode", h.mode.is_some()), ("default", h.default.is_some())]
        {
            if !set {
                missing.push(key);
            }
        }
        let default = h.default?.value;
        Some(Policy {
            name: h.name?.value,
            version: SCHEMA_VERSION,
            mode: h.mode?.value,
            default,
            on_undecodable: h.on_undecodable.map_or(default, |l| l.value),
            on_toctou: h.on_toctou.map_or(OnToctou::Log, |l| l.value),
            rules: self.rules,
        })
    }
}

struct Cx<'a> {
    host: &'a Host,
    diags: Vec<Diagnostic>,
}

/// The keys of one mapping, first occurrence of each.
struct Fields<'n> {
    map: &'n Node,
    entries: HashMap<&'n str, &'n Node>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.get(key).copied()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

impl Cx<'_> {
    fn error(&mut self, node: &Node, field: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(node.line, node.column, field, message));
    }

    /// A mapping's entries; reports a non-mapping, unknown keys and repeated keys.
    fn fields<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(node, path, format!("expected a mapping, found {}", node.kind()));
            return None;
        };
        let mut fields = Fields { map: node, entries: HashMap::new() };
        let mut first_line: HashMap<&str, usize> = HashMap::new();
        for (key, value) in entries {
            let Some(name) = key.text() else {
                self.error(key, path, format!("expected a key name, found {}", key.kind()));
                continue;
            };
            if !allowed.contains(&name) {
                let mut message = format!("unknown key '{name}'; expected {}", one_of(allowed));
                if name == "not" {
                    message = "'not' cannot be nested: a 'not' holds the same keys as 'match' except 'not'"
                        .to_string();
                } else if let Some(hint) = names::suggest(name, allowed.iter().copied()) {
                    message.push_str(&format!("; did you mean '{hint}'?"));
                }
                self.error(key, &join(path, name), message);
                continue;
            }
            if let Some(line) = first_line.get(name) {
                self.error(key, &join(path, name), format!("duplicate key '{name}' (first at line {line})"));
                continue;
            }
            first_line.insert(name, key.line);
            fields.entries.insert(name, value);
        }
        Some(fields)
    }

    fn required<'n>(&mut self, fields: &Fields<'n>, key: &str, path: &str) -> Option<&'n Node> {
        let node = fields.get(key);
        if node.is_none() {
            self.error(fields.map, path, format!("missing required key '{key}'"));
        }
        node
    }

    fn text<'n>(&mut self, node: &'n Node, field: &str, what: &str) -> Option<&'n str> {
        match node.text() {
            Some(t) if !t.is_empty() => Some(t),
            Some(_) => {
                self.error(node, field, format!("{what} must not be empty"));
                None
            }
            None => {
                self.error(node, field, format!("expected {what}, found {}", node.kind()));
                None
            }
        }
    }

    fn keyword<T: Copy>(
        &mut self,
        node: &Node,
        field: &str,
        what: &str,
        all: &[T],
        label: fn(T) -> &'static str,
    ) -> Option<T> {
        let article = if what.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        let text = self.text(node, field, &format!("{article} {what}"))?;
        if let Some(found) = all.iter().copied().find(|v| label(*v) == text) {
            return Some(found);
        }
        let labels: Vec<&str> = all.iter().map(|v| label(*v)).collect();
        self.error(node, field, unknown_name(what, text, &labels));
        None
    }

    /// One file: its header keys (each optional here) and its rules. With `whole`, the
    /// file is the whole policy and a missing required key is an error at its mapping.
    fn part(&mut self, root: &Node, whole: bool) -> Option<Part> {
        if root.value == Value::Null {
            self.diags.push(Diagnostic::error(
                1,
                1,
                "",
                "the policy is empty; expected a mapping with version, name, mode, default, rules",
            ));
            return None;
        }
        let fields = self.fields(root, "", top_keys())?;
        let version = self.required(&fields, "version", "").and_then(|n| self.version(n));
        let get = |key: &str| {
            let node = fields.get(key);
            (node, whole && HEADER_REQUIRED.contains(&key))
        };
        let mut header = Header::default();
        let mut ok = true;
        for key in HEADER_KEYS {
            let (node, required) = get(key);
            let Some(node) = node else {
                if required {
                    self.error(fields.map, "", format!("missing required key '{key}'"));
                    ok = false;
                }
                continue;
            };
            fn at<T>(node: &Node, value: T) -> Option<Located<T>> {
                Some(Located { value, line: node.line, column: node.column })
            }
            let parsed = match *key {
                "name" => {
                    self.text(node, "name", "a policy name").map(|t| header.name = at(node, t.to_string()))
                }
                "mode" => self
                    .keyword(node, "mode", "mode", &Mode::ALL, Mode::label)
                    .map(|m| header.mode = at(node, m)),
                "default" => self.action(node, "default").map(|a| header.default = at(node, a)),
                "on_undecodable" => {
                    self.action(node, "on_undecodable").map(|a| header.on_undecodable = at(node, a))
                }
                "on_toctou" => self
                    .keyword(node, "on_toctou", "on_toctou value", &OnToctou::ALL, OnToctou::label)
                    .map(|t| header.on_toctou = at(node, t)),
                _ => unreachable!("HEADER_KEYS"),
            };
            ok &= parsed.is_some();
        }
        let rules = match fields.get("rules") {
            None => Some(Vec::new()),
            Some(n) => self.rules(n),
        };
        (ok && version.is_some()).then_some(())?;
        Some(Part { header, rules: rules? })
    }

    fn version(&mut self, node: &Node) -> Option<u32> {
        match values::number(node) {
            Some(v) if v == i128::from(SCHEMA_VERSION) => Some(SCHEMA_VERSION),
            Some(v) => {
                self.error(
                    node,
                    "version",
                    format!("unsupported version {v}; this fwctl-guard reads version 1"),
                );
                None
            }
            None => {
                self.error(
                    node,
                    "version",
                    format!("expected the integer 1, found {}", values::describe(node)),
                );
                None
            }
        }
    }

    fn action(&mut self, node: &Node, field: &str) -> Option<Action> {
        self.keyword(node, field, "action", &Action::ALL, Action::label)
    }

    fn rules(&mut self, node: &Node) -> Option<Vec<Rule>> {
        let items = match &node.value {
            Value::Null => return Some(Vec::new()),
            Value::Seq(items) => items,
            _ => {
                self.error(node, "rules", format!("expected a list of rules, found {}", node.kind()));
                return None;
            }
        };
        let mut rules = Vec::new();
        let mut ok = true;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("rules[{i}]");
            let (name, rule) = self.rule(item, &path);
            if let Some((name_node, name)) = name {
                if let Some(first) = seen.get(name) {
                    self.error(
                        name_node,
                        &join(&path, "name"),
                        format!("duplicate rule name '{name}' (first used by the rule at line {first})"),
                    );
                    ok = false;
                } else {
                    seen.insert(name.to_string(), item.line);
                }
            }
            match rule {
                Some(rule) => rules.push(rule),
                None => ok = false,
            }
        }
        ok.then_some(rules)
    }

    /// One rule, and its name with the name's node even when the rest is broken (so
    /// duplicate names are still reported).
    #[allow(clippy::type_complexity)]
    fn rule<'n>(&mut self, node: &'n Node, path: &str) -> (Option<(&'n Node, &'n str)>, Option<Rule>) {
        let Some(fields) = self.fields(node, path, rule_keys()) else { return (None, None) };
        let name_node = self.required(&fields, "name", path);
        let name = name_node.and_then(|n| self.text(n, &join(path, "name"), "a rule name").map(|t| (n, t)));
        let action =
            self.required(&fields, "action", path).and_then(|n| self.action(n, &join(path, "action")));
        let matcher = match fields.get("match") {
            None => Some(Match::default()),
            Some(n) if n.value == Value::Null => Some(Match::default()),
            Some(n) => self.matcher(n, &join(path, "match"), None),
        };
        let rule = match (name, action, matcher) {
            (Some((_, name)), Some(action), Some(matcher)) => Some(Rule {
                name: name.to_string(),
                action,
                matcher,
                line: node.line,
                column: node.column,
                file: None,
            }),
            _ => None,
        };
        (name, rule)
    }

    /// A `match` (or, with `outer`, the `not` inside the match whose classes and drivers
    /// are `outer`: opcode names in a `not` resolve within its rule's classes).
    fn matcher(&mut self, node: &Node, path: &str, outer: Option<(&[u8], &[u8])>) -> Option<Match> {
        let allowed = if outer.is_some() { json_schema::keys::<json_schema::NotDoc>() } else { match_keys() };
        let fields = self.fields(node, path, allowed)?;
        let before = self.diags.len();
        let mut m = Match::default();
        let f = |key: &str| join(path, key);

        m.classes = self.list(&fields, "class", path, |cx, n| {
            cx.named(n, &f("class"), "class", &class::ALL, class::label, names::class_from_name)
        });
        m.drivers = self.list(&fields, "driver", path, |cx, n| {
            cx.named(n, &f("driver"), "driver", &names::DRIVERS, driver::label, names::driver_from_name)
        });
        let (classes, drivers) = match outer {
            Some((c, d)) => (
                if m.classes.is_empty() { c.to_vec() } else { m.classes.clone() },
                if m.drivers.is_empty() { d.to_vec() } else { m.drivers.clone() },
            ),
            None => (m.classes.clone(), m.drivers.clone()),
        };
        let spaces = names::spaces(&classes, &drivers);
        let opcodes: Vec<Vec<OpcodeSel>> = self.list(&fields, "opcode", path, |cx, n| {
            cx.value(n, &f("opcode"), values::opcode(n, &spaces, &classes))
        });
        m.opcodes = dedup(opcodes.into_iter().flatten().collect());
        m.op_mods = self.list(&fields, "op_mod", path, |cx, n| cx.u32(n, &f("op_mod"), "op_mod"));
        m.scopes = self.list(&fields, "scope", path, |cx, n| {
            cx.named(n, &f("scope"), "scope", &names::SCOPES, scope::label, names::scope_from_name)
        });
        m.uids = self.list(&fields, "uid", path, |cx, n| cx.u32(n, &f("uid"), "uid"));
        m.gids = self.list(&fields, "gid", path, |cx, n| cx.u32(n, &f("gid"), "gid"));
        m.comms = self.list(&fields, "comm", path, |cx, n| {
            let text = cx.text(n, &f("comm"), "a comm")?;
            cx.value(n, &f("comm"), values::comm(text))
        });
        m.cgroups = self.list(&fields, "cgroup", path, |cx, n| {
            let text = cx.text(n, &f("cgroup"), "a cgroup path")?;
            cx.value(n, &f("cgroup"), values::cgroup(text, &cx.host.cgroup_root))
        });
        m.devices = self.list(&fields, "device", path, |cx, n| {
            let text = cx.text(n, &f("device"), "a device")?;
            cx.value(n, &f("device"), values::device(text))
        });
        m.devices.dedup_by(|a, b| a.same_node(b));
        if let Some(node) = fields.get("effects") {
            (m.effects_any, m.effects_all) = self.effects(&fields, node, path);
        }
        if let Some(node) = fields.get("undeclared") {
            m.undeclared = self.boolean(node, &f("undeclared"));
        }
        if outer.is_none() {
            if let Some(not) = fields.get("not") {
                m.not = self.matcher(not, &f("not"), Some((&classes, &drivers))).map(Box::new);
            }
        }
        (self.diags.len() == before).then_some(m)
    }

    /// `effects:` as a name or list of names (any-of), or `{any: [...], all: [...]}`:
    /// the (any, all) bit masks.
    fn effects(&mut self, fields: &Fields<'_>, node: &Node, path: &str) -> (u32, u32) {
        let field = join(path, "effects");
        let names = |cx: &mut Self, fields: &Fields<'_>, key: &str, at: &str| -> u32 {
            cx.list(fields, key, at, |cx, n| cx.effect(n, &join(at, key))).into_iter().fold(0, |m, b| m | b)
        };
        if !matches!(node.value, Value::Map(_)) {
            return (names(self, fields, "effects", path), 0);
        }
        let Some(inner) = self.fields(node, &field, effects_keys()) else { return (0, 0) };
        if matches!(&node.value, Value::Map(entries) if entries.is_empty()) {
            self.error(node, &field, "expected 'any' and/or 'all' with lists of effect names");
        }
        (names(self, &inner, "any", &field), names(self, &inner, "all", &field))
    }

    fn effect(&mut self, node: &Node, field: &str) -> Option<u32> {
        let text = self.text(node, field, "an effect name")?;
        if let Some(bit) = effect::from_name(text) {
            return Some(bit);
        }
        let labels: Vec<&str> = effect::NAMES.iter().chain(effect::ALIASES.iter()).map(|(n, _)| *n).collect();
        self.error(node, field, unknown_name("effect", text, &labels));
        None
    }

    fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.error(node, field, format!("expected true or false, found {}", node.kind()));
                None
            }
        }
    }

    /// The values of a list key (a lone scalar is a list of one), each through `item`,
    /// duplicates dropped. Absent: empty (any).
    fn list<T: PartialEq>(
        &mut self,
        fields: &Fields<'_>,
        key: &str,
        path: &str,
        mut item: impl FnMut(&mut Self, &Node) -> Option<T>,
    ) -> Vec<T> {
        let Some(node) = fields.get(key) else { return Vec::new() };
        let field = join(path, key);
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) if items.is_empty() => {
                self.error(node, &field, "empty list matches nothing; leave the key out to match any");
                return Vec::new();
            }
            Value::Seq(items) => items.iter().collect(),
            Value::Null => {
                self.error(node, &field, "no value; leave the key out to match any");
                return Vec::new();
            }
            Value::Map(_) => {
                self.error(node, &field, "expected a value or a list of values, found a mapping");
                return Vec::new();
            }
            _ => vec![node],
        };
        let mut out: Vec<T> = Vec::new();
        for n in items {
            if matches!(n.value, Value::Seq(_) | Value::Map(_) | Value::Null) {
                self.error(n, &field, format!("expected a single value in the list, found {}", n.kind()));
                continue;
            }
            if let Some(v) = item(self, n) {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        out
    }

    fn named(
        &mut self,
        node: &Node,
        field: &str,
        what: &str,
        all: &[u8],
        label: fn(u8) -> &'static str,
        from_name: fn(&str) -> Option<u8>,
    ) -> Option<u8> {
        let text = self.text(node, field, what)?;
        if let Some(id) = from_name(text) {
            return Some(id);
        }
        let labels: Vec<&str> = all.iter().map(|v| label(*v)).collect();
        self.error(node, field, unknown_name(what, text, &labels));
        None
    }

    fn u32(&mut self, node: &Node, field: &str, what: &str) -> Option<u32> {
        match values::number(node) {
            Some(v) => match u32::try_from(v) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.error(node, field, format!("{what} {v} is out of range (0 to {})", u32::MAX));
                    None
                }
            },
            None => {
                let extra = if matches!(what, "uid" | "gid") { " (names are not looked up)" } else { "" };
                self.error(
                    node,
                    field,
                    format!("expected a number for {what}, found {}{extra}", values::describe(node)),
                );
                None
            }
        }
    }

    /// A value parsed by `values`: Some, or an error at `node`.
    fn value<T>(&mut self, node: &Node, field: &str, parsed: Result<T, String>) -> Option<T> {
        parsed.map_err(|message| self.error(node, field, message)).ok()
    }
}

fn dedup(mut sels: Vec<OpcodeSel>) -> Vec<OpcodeSel> {
    let mut seen = std::collections::HashSet::new();
    sels.retain(|s| seen.insert(*s));
    sels
}

/// "unknown WHAT 'TEXT'; expected one of ...; did you mean '...'?"
fn unknown_name(what: &str, text: &str, labels: &[&str]) -> String {
    let mut message = format!("unknown {what} '{text}'; expected {}", one_of(labels));
    if let Some(hint) = names::suggest(text, labels.iter().copied()) {
        message.push_str(&format!("; did you mean '{hint}'?"));
    }
    message
}
