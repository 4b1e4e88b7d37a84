//! A YAML document as a tree of nodes that each know their line and column.
//!
//! Policies are read in two steps: serde-saphyr turns the text into this tree (only broken
//! YAML fails here), then `resolve` walks the tree and reports *every* schema problem at
//! once, each at its node. A derived `Deserialize` with `deny_unknown_fields` would stop at
//! the first unknown key; the tree walk applies the same strictness without stopping.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{options::DuplicateKeyPolicy, Location, Spanned};

use super::diag::Diagnostic;

/// One node with its position (1-based, characters) and, for scalars, its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub column: usize,
    /// The scalar as written (e.g. `yes`, `0x10`, `1_000`); empty for collections.
    pub raw: String,
}

/// What a node holds. Mappings keep every entry in order, repeated keys included.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The YAML type, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// A scalar as text: strings as they are, other scalars as written in the source
    /// (so `comm: [yes]` is the comm `yes`, not a boolean). `None` for null and collections.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => Some(&self.raw),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

/// Parse `text` into a tree; a YAML syntax error comes back with its line and column.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    let options = serde_saphyr::options! { duplicate_keys: DuplicateKeyPolicy::PassThrough };
    match serde_saphyr::from_str_with_options::<Spanned<RawNode>>(text, options) {
        Ok(root) => Ok(convert(root, text)),
        Err(e) => {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
            let message = e.without_snippet().to_string();
            // The library appends " at line L, column C"; the diagnostic carries that already.
            let message = match message.rfind(" at line ") {
                Some(cut) => message[..cut].to_string(),
                None => message,
            };
            Err(Diagnostic::error(line.max(1), column.max(1), "", format!("invalid YAML: {message}")))
        }
    }
}

fn convert(node: Spanned<RawNode>, text: &str) -> Node {
    let (line, column) = position(&node.referenced);
    let raw = match node.value {
        RawNode::Seq(_) | RawNode::Map(_) => String::new(),
        _ => source_text(&node.defined, text),
    };
    let value = match node.value {
        RawNode::Null => Value::Null,
        RawNode::Bool(b) => Value::Bool(b),
        RawNode::Int(i) => Value::Int(i),
        RawNode::Float(f) => Value::Float(f),
        RawNode::Str(s) => Value::Str(s),
        RawNode::Seq(items) => Value::Seq(items.into_iter().map(|n| convert(n, text)).collect()),
        RawNode::Map(entries) => {
            Value::Map(entries.into_iter().map(|(k, v)| (convert(k, text), convert(v, text))).collect())
        }
    };
    Node { value, line, column, raw }
}

fn position(location: &Location) -> (usize, usize) {
    (location.line() as usize, location.column() as usize)
}

fn source_text(location: &Location, text: &str) -> String {
    let span = location.span();
    match (span.byte_offset(), span.byte_len()) {
        (Some(start), Some(len)) => {
            text.get(start as usize..(start + len) as usize).unwrap_or_default().trim().to_string()
        }
        _ => String::new(),
    }
}

/// What serde-saphyr hands over: any node, children wrapped in `Spanned`.
enum RawNode {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
        i128::try_from(v).map(RawNode::Int).map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawNode, E> {
        Ok(RawNode::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_where_they_are() {
        let root = parse("a: 1\nb:\n  - x\n  - 0x10\n").unwrap();
        let Value::Map(entries) = &root.value else { panic!("{root:?}") };
        assert_eq!((entries[0].1.line, entries[0].1.column), (1, 4));
        let Value::Seq(items) = &entries[1].1.value else { panic!() };
        assert_eq!((items[1].line, items[1].column, &items[1].value), (4, 5, &Value::Int(16)));
        assert_eq!(items[1].raw, "0x10");
    }

    #[test]
    fn plain_scalars_keep_their_spelling() {
        let root = parse("- yes\n- 007\n").unwrap();
        let Value::Seq(items) = &root.value else { panic!() };
        assert_eq!(items[0].text(), Some("yes"));
        assert_eq!(items[1].text(), Some("007"));
    }

    #[test]
    fn repeated_keys_are_kept() {
        let root = parse("a: 1\na: 2\n").unwrap();
        let Value::Map(entries) = &root.value else { panic!() };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 2));
        assert!(e.message.starts_with("invalid YAML: "), "{}", e.message);
        assert!(!e.message.contains("at line"), "{}", e.message);
    }
}
