//! The policy document as Rust types: the source of the JSON Schema
//! (`fwctl-guard policy schema`, committed as `policies/schema.json`) and of the key lists
//! the front end (`resolve`) accepts, so the two cannot disagree.
//!
//! These types are not what the agent parses with: `resolve` walks a located tree to
//! report every problem at its line and column. They describe the same document; the
//! enumerations come from the same tables `resolve` uses (`names`, `effects`, `resolved`).
//!
//! The schema is of one *file*: `name`, `mode` and `default` are optional in it because a
//! file of a policy directory may leave them to another file; the policy as a whole must
//! set them (the agent checks that). Names are in their canonical spelling (the agent
//! also accepts other case and `_` for `-`).

use std::borrow::Cow;

use fwctl_common::{
    effects::effect,
    model::{class, driver, scope},
};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize};

use super::{
    names,
    resolved::{Action, Mode, OnToctou, COMM_MAX},
};

// `Option` fields carry `schemars(with)`: absent means "any" or "the default", and null is
// not a value the agent takes for them.

/// One fwctl-guard policy file (schema version 1). Rules are ordered; the first rule
/// that matches a command decides; commands no rule matches get `default`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "fwctl-guard policy")]
pub struct PolicyDoc {
    /// Schema version; only 1.
    pub version: Version,
    /// Reported as fwctl_guard_policy_info{name}. Required in the policy (in one file of a
    /// policy directory).
    #[serde(default)]
    #[schemars(with = "PolicyName")]
    pub name: Option<PolicyName>,
    /// enforce: deny refuses the command (EPERM, BPF LSM hook); audit: a deny is recorded
    /// as would_deny. Required in the policy (in one file of a policy directory).
    #[serde(default)]
    #[schemars(with = "ModeName")]
    pub mode: Option<ModeName>,
    /// Verdict for a command no rule matches. Required in the policy.
    #[serde(default)]
    #[schemars(with = "ActionName")]
    pub default: Option<ActionName>,
    /// Verdict for a command whose payload could not be read (default: `default`).
    #[serde(default)]
    #[schemars(with = "ActionName")]
    pub on_undecodable: Option<ActionName>,
    /// What happens to a task whose payload changed after the decision (default: log).
    #[serde(default)]
    #[schemars(with = "ToctouName")]
    pub on_toctou: Option<ToctouName>,
    /// Ordered rules; the first match decides.
    #[serde(default)]
    #[schemars(with = "Vec<RuleDoc>")]
    pub rules: Option<Vec<RuleDoc>>,
}

/// One rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    /// Unique within the policy (the `rule` label of the metrics and audit log).
    #[schemars(length(min = 1))]
    pub name: String,
    /// allow, audit (allow and flag), or deny.
    pub action: ActionName,
    /// What the rule matches; absent or empty matches every command.
    #[serde(default, rename = "match")]
    #[schemars(with = "MatchDoc")]
    pub matcher: Option<MatchDoc>,
}

/// Declares the match fields once, for `match` (with `not`) and for its `not` (without).
macro_rules! match_fields {
    ($(#[$meta:meta])* $name:ident { $($extra:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Command class(es).
            #[serde(default)]
            #[schemars(with = "OneOrMany<ClassName>")]
            pub class: Option<OneOrMany<ClassName>>,
            /// Driver(s): the fwctl driver, or the block/char driver of the node.
            #[serde(default)]
            #[schemars(with = "OneOrMany<DriverName>")]
            pub driver: Option<OneOrMany<DriverName>>,
            /// Opcode name(s) from the class's catalog (e.g. format-nvm, QUERY_HCA_CAP) or numbers.
            #[serde(default)]
            #[schemars(with = "OneOrMany<Opcode>")]
            pub opcode: Option<OneOrMany<Opcode>>,
            /// mlx5 op_mod, pds endpoint, CXL command id.
            #[serde(default)]
            #[schemars(with = "OneOrMany<Number>")]
            pub op_mod: Option<OneOrMany<Number>>,
            /// fwctl scope(s).
            #[serde(default)]
            #[schemars(with = "OneOrMany<ScopeName>")]
            pub scope: Option<OneOrMany<ScopeName>>,
            /// uid(s) of the calling task (numbers; names are not looked up).
            #[serde(default)]
            #[schemars(with = "OneOrMany<Number>")]
            pub uid: Option<OneOrMany<Number>>,
            /// gid(s) of the calling task.
            #[serde(default)]
            #[schemars(with = "OneOrMany<Number>")]
            pub gid: Option<OneOrMany<Number>>,
            /// Task name(s) as the kernel keeps them (at most 15 bytes). A process chooses
            /// its own comm: pair it with uid or cgroup.
            #[serde(default)]
            #[schemars(with = "OneOrMany<Comm>")]
            pub comm: Option<OneOrMany<Comm>>,
            /// cgroup v2 path(s) below /sys/fs/cgroup, e.g. /system.slice/fwupd.service.
            #[serde(default)]
            #[schemars(with = "OneOrMany<AbsPath>")]
            pub cgroup: Option<OneOrMany<AbsPath>>,
            /// Device node(s): a path, MAJOR:MINOR (character device) or block:MAJOR:MINOR.
            #[serde(default)]
            #[schemars(with = "OneOrMany<DeviceName>")]
            pub device: Option<OneOrMany<DeviceName>>,
            /// Effects the device declares for the command: names (any-of), or {any, all}.
            #[serde(default)]
            #[schemars(with = "Effects")]
            pub effects: Option<Effects>,
            /// true: the device's effects are known and it does not list the opcode.
            #[serde(default)]
            #[schemars(with = "Flag")]
            pub undeclared: Option<Flag>,
            $($extra)*
        }
    };
}

match_fields!(
    /// What a rule matches: every key optional (absent = any), a list means any-of, keys
    /// combine as all-of.
    MatchDoc {
        /// Excluded subjects: the rule matches only if this does not (same keys, no `not`).
        #[serde(default)]
        #[schemars(with = "NotDoc")]
        pub not: Option<NotDoc>,
    }
);

match_fields!(
    /// The commands a rule excludes (the keys of `match` except `not`).
    NotDoc {}
);

/// `effects:` in its long form.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1))]
pub struct EffectsDoc {
    /// At least one of these is declared.
    #[serde(default)]
    #[schemars(with = "OneOrMany<EffectName>")]
    pub any: Option<OneOrMany<EffectName>>,
    /// Every one of these is declared.
    #[serde(default)]
    #[schemars(with = "OneOrMany<EffectName>")]
    pub all: Option<OneOrMany<EffectName>>,
}

/// `effects:`: names (any-of) or `{any: [...], all: [...]}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Effects {
    Names(OneOrMany<EffectName>),
    Sets(EffectsDoc),
}

/// A value or a non-empty list of values (any-of).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let item = generator.subschema_for::<T>();
        json_schema!({ "anyOf": [item, { "type": "array", "items": item, "minItems": 1 }] })
    }
}

/// A string that is one of `labels`.
fn keyword(labels: impl IntoIterator<Item = &'static str>, description: &str) -> Schema {
    let labels: Vec<&str> = labels.into_iter().collect();
    json_schema!({ "type": "string", "enum": labels, "description": description })
}

/// The decimal or 0x-hex spelling of an unsigned number (`values::number`).
const NUMBER_PATTERN: &str = r"^\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*$";

/// Declares a unit type deserialized as any value (the schema carries the constraint).
macro_rules! schema_type {
    ($name:ident, $schema_name:literal, |$generator:ident| $body:expr) => {
        #[derive(Debug)]
        pub struct $name;

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                de::IgnoredAny::deserialize(d).map(|_| $name)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                $schema_name.into()
            }

            fn json_schema($generator: &mut SchemaGenerator) -> Schema {
                $body
            }
        }
    };
}

schema_type!(Flag, "Flag", |_g| json_schema!({ "type": "boolean" }));
schema_type!(PolicyName, "PolicyName", |_g| json_schema!({ "type": "string", "minLength": 1 }));
schema_type!(Version, "Version", |_g| json_schema!({ "type": "integer", "const": 1 }));
schema_type!(ModeName, "Mode", |_g| keyword(Mode::ALL.map(Mode::label), "enforce or audit"));
schema_type!(ActionName, "Action", |_g| keyword(Action::ALL.map(Action::label), "allow, audit or deny"));
schema_type!(ToctouName, "OnToctou", |_g| keyword(OnToctou::ALL.map(OnToctou::label), "log or kill"));
schema_type!(ClassName, "Class", |_g| keyword(class::ALL.map(class::label), "command class"));
schema_type!(DriverName, "Driver", |_g| keyword(names::DRIVERS.map(driver::label), "driver"));
schema_type!(ScopeName, "Scope", |_g| keyword(names::SCOPES.map(scope::label), "fwctl scope"));
schema_type!(EffectName, "Effect", |_g| keyword(
    effect::NAMES.iter().chain(effect::ALIASES.iter()).map(|(n, _)| *n),
    "an effect the device declares (NVMe short names: lbcc, ncc, nic, ccc)"
));
schema_type!(Number, "Number", |_g| json_schema!({
    "anyOf": [
        { "type": "integer", "minimum": 0, "maximum": u32::MAX },
        { "type": "string", "pattern": NUMBER_PATTERN },
    ],
    "description": "an unsigned 32-bit number: an integer, or a decimal or 0x-hex string",
}));
schema_type!(Opcode, "Opcode", |_g| json_schema!({
    "anyOf": [
        { "type": "integer", "minimum": 0, "maximum": u32::MAX },
        { "type": "string", "pattern": NUMBER_PATTERN },
        { "type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]*$" },
    ],
    "description": "an opcode number, or a name from the catalog of the rule's class \
                    (fwctl-guard policy explain resolves it)",
}));
schema_type!(Comm, "Comm", |_g| json_schema!({
    "type": "string", "minLength": 1, "maxLength": COMM_MAX,
    "description": "a task name, at most 15 bytes",
}));
schema_type!(AbsPath, "CgroupPath", |_g| json_schema!({ "type": "string", "pattern": "^/" }));
schema_type!(DeviceName, "Device", |_g| json_schema!({
    "type": "string",
    "pattern": r"^(/.+|(block:)?[0-9]+:[0-9]+)$",
    "description": "/dev/PATH, MAJOR:MINOR, or block:MAJOR:MINOR",
}));

/// The JSON Schema of a policy file, as committed in `policies/schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(PolicyDoc);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

/// The keys of a document type, in declaration order (what `deny_unknown_fields` accepts).
pub fn keys<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut probe = KeyProbe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.expect("a struct with named fields")
}

/// A deserializer that only records the field list serde's derive hands it.
struct KeyProbe(Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for &mut KeyProbe {
    type Error = de::value::Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = Some(fields);
        Err(de::Error::custom("keys recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_in_declaration_order() {
        assert_eq!(keys::<RuleDoc>(), ["name", "action", "match"]);
        assert_eq!(keys::<MatchDoc>().last(), Some(&"not"));
        assert_eq!(keys::<MatchDoc>()[..keys::<MatchDoc>().len() - 1], *keys::<NotDoc>());
    }

    fn schema() -> serde_json::Value {
        serde_json::from_str(&json_schema()).unwrap()
    }

    fn properties(object: &serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = object["properties"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn sorted(keys: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        keys.sort();
        keys
    }

    /// The schema's objects take exactly the keys the front end takes, and close the rest.
    #[test]
    fn schema_keys_are_the_front_ends() {
        let s = schema();
        let defs = &s["$defs"];
        for (object, keys) in [
            (&s, keys::<PolicyDoc>()),
            (&defs["RuleDoc"], keys::<RuleDoc>()),
            (&defs["MatchDoc"], keys::<MatchDoc>()),
            (&defs["NotDoc"], keys::<NotDoc>()),
            (&defs["EffectsDoc"], keys::<EffectsDoc>()),
        ] {
            assert_eq!(properties(object), sorted(keys), "{object}");
            assert_eq!(object["additionalProperties"], false, "{object}");
        }
        assert_eq!(s["required"], serde_json::json!(["version"]));
        assert_eq!(defs["RuleDoc"]["required"], serde_json::json!(["name", "action"]));
        // What `resolve` says it takes, in its messages: the same lists.
        let d =
            super::super::parse("version: 1\nname: x\nmode: audit\ndefault: allow\nbogus: 1\n").unwrap_err();
        assert!(
            d[0].message
                .contains("expected version, name, mode, default, on_undecodable, on_toctou or rules"),
            "{d:?}"
        );
    }

    /// Every keyword the schema lists is one the front end resolves, and the other way round.
    #[test]
    fn schema_enums_are_the_front_ends() {
        let s = schema();
        let values = |def: &str| -> Vec<String> {
            s["$defs"][def]["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let labels = |ls: &[&str]| ls.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        assert_eq!(values("Action"), labels(&Action::ALL.map(Action::label)));
        assert_eq!(values("Mode"), labels(&Mode::ALL.map(Mode::label)));
        assert_eq!(values("OnToctou"), labels(&OnToctou::ALL.map(OnToctou::label)));
        for (def, resolve) in [
            ("Class", names::class_from_name as fn(&str) -> Option<u8>),
            ("Driver", names::driver_from_name),
            ("Scope", names::scope_from_name),
        ] {
            let listed = values(def);
            assert!(!listed.is_empty());
            for name in &listed {
                assert!(resolve(name).is_some(), "{def} {name}");
            }
            // Every id the front end resolves has its name in the schema.
            let ids: std::collections::BTreeSet<u8> = listed.iter().filter_map(|n| resolve(n)).collect();
            assert_eq!(ids.len(), listed.len(), "{def}: one name per id");
        }
        assert_eq!(values("Class").len(), class::ALL.len());
        assert_eq!(values("Driver").len(), names::DRIVERS.len());
        assert_eq!(values("Scope").len(), names::SCOPES.len());
        let effects = values("Effect");
        assert_eq!(effects.len(), effect::NAMES.len() + effect::ALIASES.len());
        assert!(effects.iter().all(|e| effect::from_name(e).is_some()));
    }

    /// `policies/schema.json` is generated, never edited: regenerate it with
    /// `fwctl-guard policy schema > policies/schema.json`.
    #[test]
    fn committed_schema_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == json_schema(),
            "{} is stale: run `fwctl-guard policy schema > policies/schema.json`",
            path.display()
        );
    }
}
