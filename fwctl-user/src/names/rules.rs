//! Stable numeric ids for rule names. Kernel counters and audit events carry the id; the
//! metrics and the audit log print the name. An id is never reused, so a counter keeps
//! its label even after a reload removes or reorders its rule. The table is kept in a
//! [`RuleNameStore`] (the kernel's pinned `RULE_NAMES` map), so an agent that adopts the
//! counters of the one before it names them the same way.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use fwctl_common::policy::rule_id;

/// Where rule names outlive the agent.
pub trait RuleNameStore: Send + Sync {
    /// Every (id, name) stored so far.
    fn load(&self) -> Vec<(u16, String)>;
    /// Keep `name` under `id`.
    fn save(&mut self, id: u16, name: &str) -> Result<(), String>;
}

#[derive(Clone, Default)]
pub struct RuleIds {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    by_name: HashMap<String, u16>,
    by_id: HashMap<u16, String>,
    store: Option<Box<dyn RuleNameStore>>,
}

impl RuleIds {
    /// Ids backed by `store`: those already in it (from an earlier agent) are kept.
    pub fn persistent(store: impl RuleNameStore + 'static) -> Self {
        let mut inner = Inner::default();
        for (id, name) in store.load() {
            inner.by_name.insert(name.clone(), id);
            inner.by_id.insert(id, name);
        }
        inner.store = Some(Box::new(store));
        Self { inner: Arc::new(RwLock::new(inner)) }
    }

    /// The id of `name`, assigning the next free one on first sight.
    pub fn id(&self, name: &str) -> u16 {
        let mut inner = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(id) = inner.by_name.get(name) {
            return *id;
        }
        let id = inner.by_id.keys().copied().max().map_or(rule_id::FIRST_RULE_ID, |max| max + 1);
        inner.by_name.insert(name.to_string(), id);
        inner.by_id.insert(id, name.to_string());
        if let Some(store) = inner.store.as_mut() {
            if let Err(e) = store.save(id, name) {
                log::warn!("rule '{name}' (id {id}) not kept for the next agent: {e}");
            }
        }
        id
    }

    /// The `rule` of a counter or audit record: the rule's name, or what decided without
    /// one (`default`, `on_undecodable`, `none` without a policy).
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
        assert_eq!(ids.label(rule_id::UNDECODABLE), "on_undecodable");
        assert_eq!(ids.label(rule_id::NO_POLICY), "none");
    }

    /// A store that remembers in memory (the kernel map is tested in `kernel::maps`).
    #[derive(Default)]
    struct Memory(std::sync::Arc<std::sync::Mutex<Vec<(u16, String)>>>);

    impl RuleNameStore for Memory {
        fn load(&self) -> Vec<(u16, String)> {
            self.0.lock().unwrap().clone()
        }
        fn save(&mut self, id: u16, name: &str) -> Result<(), String> {
            self.0.lock().unwrap().push((id, name.to_string()));
            Ok(())
        }
    }

    #[test]
    fn a_later_agent_keeps_the_ids_of_the_store() {
        let shared = Memory::default();
        let first = RuleIds::persistent(Memory(shared.0.clone()));
        let (a, b) = (first.id("allow-reads"), first.id("deny-format"));
        let second = RuleIds::persistent(Memory(shared.0.clone()));
        assert_eq!(second.label(b), "deny-format");
        assert_eq!(second.id("allow-reads"), a);
        assert!(second.id("new-rule") > b, "ids are never reused");
    }
}
