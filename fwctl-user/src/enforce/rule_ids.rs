//! Stable numeric ids for rule names. Kernel counters carry the id; metrics print the
//! name. An id is never reused while the agent runs, so a counter keeps its label even
//! after a reload removes or reorders its rule.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use fwctl_common::policy::rule_id;

#[derive(Clone, Default)]
pub struct RuleIds {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    by_name: HashMap<String, u16>,
    by_id: HashMap<u16, String>,
}

impl RuleIds {
    /// The id of `name`, assigning the next free one on first sight.
    pub fn id(&self, name: &str) -> u16 {
        let mut inner = self.inner.write().expect("rule id lock");
        if let Some(id) = inner.by_name.get(name) {
            return *id;
        }
        let id = rule_id::FIRST_RULE_ID + inner.by_name.len() as u16;
        inner.by_name.insert(name.to_string(), id);
        inner.by_id.insert(id, name.to_string());
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
}
