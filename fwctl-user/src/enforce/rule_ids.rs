//! Stable numeric ids for rule names. Kernel counters carry the id; metrics print the
//! name. An id is never reused, so a counter keeps its label even after a reload removes
//! or reorders its rule. The table lives in the pinned `RULE_NAMES` map too, so an agent
//! that adopts the counters of one before it labels them the same way.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use fwctl_common::{
    model::{RuleName, RULE_NAME_BYTES},
    policy::rule_id,
};

#[derive(Clone, Default)]
pub struct RuleIds {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    by_name: HashMap<String, u16>,
    by_id: HashMap<u16, String>,
    store: Option<BpfHashMap<MapData, u16, RuleName>>,
}

impl RuleIds {
    /// Ids backed by the kernel map: those already in it (from an earlier agent) are kept.
    pub fn persistent(store: BpfHashMap<MapData, u16, RuleName>) -> Self {
        let mut inner = Inner::default();
        for (id, name) in store.iter().filter_map(Result::ok) {
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let name = String::from_utf8_lossy(&name[..len]).into_owned();
            inner.by_name.insert(name.clone(), id);
            inner.by_id.insert(id, name);
        }
        inner.store = Some(store);
        Self { inner: Arc::new(RwLock::new(inner)) }
    }

    /// The id of `name`, assigning the next free one on first sight.
    pub fn id(&self, name: &str) -> u16 {
        let mut inner = self.inner.write().expect("rule id lock");
        if let Some(id) = inner.by_name.get(name) {
            return *id;
        }
        let id = inner.by_id.keys().copied().max().map_or(rule_id::FIRST_RULE_ID, |max| max + 1);
        inner.by_name.insert(name.to_string(), id);
        inner.by_id.insert(id, name.to_string());
        if let Some(store) = inner.store.as_mut() {
            if let Err(e) = store.insert(id, stored_name(name), 0) {
                log::warn!("rule '{name}' (id {id}) not kept for the next agent: {e}");
            }
        }
        id
    }

    /// The `rule` label of a counter: the rule's name, or what decided without one.
    pub fn label(&self, id: u16) -> String {
        match id {
            rule_id::DEFAULT => "default".into(),
            rule_id::UNDECODABLE => "on_undecodable".into(),
            rule_id::NO_POLICY => "none".into(),
            _ => self
                .inner
                .read()
                .ok()
                .and_then(|i| i.by_id.get(&id).cloned())
                .unwrap_or_else(|| format!("#{id}")),
        }
    }
}

/// `name` NUL-padded, cut at a char boundary when longer than the map's value.
fn stored_name(name: &str) -> RuleName {
    let mut end = name.len().min(RULE_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = [0u8; RULE_NAME_BYTES];
    out[..end].copy_from_slice(&name.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_labelled() {
        let ids = RuleIds::default();
        let a = ids.id("allow-reads");
        let b = ids.id("deny-format");
        assert_eq!(ids.id("allow-reads"), a);
        assert_ne!(a, b);
        assert!(a >= rule_id::FIRST_RULE_ID);
        assert_eq!(ids.label(b), "deny-format");
        assert_eq!(ids.label(rule_id::DEFAULT), "default");
        assert_eq!(ids.label(rule_id::NO_POLICY), "none");
    }

    #[test]
    fn long_names_are_cut_at_a_char_boundary() {
        let name = "é".repeat(40); // 80 bytes
        let stored = stored_name(&name);
        let len = stored.iter().position(|&b| b == 0).unwrap_or(RULE_NAME_BYTES);
        assert_eq!(len, 64);
        assert!(std::str::from_utf8(&stored[..len]).is_ok());
        assert_eq!(&stored_name("short")[..6], b"short\0");
    }
}
