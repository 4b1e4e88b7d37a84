//! Installing a compiled policy without a gap: write the rules and index entries of the
//! inactive slot, then flip the one-entry header map to it in a single update. A command
//! reads the header once and uses that slot throughout, so it is evaluated under exactly
//! one complete policy; commands never pass unevaluated during a swap.

use anyhow::{Context as _, Result};
use aya::maps::{Array, HashMap, MapData};
use fwctl_common::policy::{CompiledRule, IndexKey, PolicyHeader, MAX_RULES};

use crate::enforce::{compile::CompiledPolicy, runtime::PolicyStore};

pub struct PolicyMaps {
    header: Array<MapData, PolicyHeader>,
    rules: Array<MapData, CompiledRule>,
    index: HashMap<MapData, IndexKey, u64>,
    generation: u64,
    active_slot: Option<u32>,
}

impl PolicyMaps {
    pub fn new(
        header: Array<MapData, PolicyHeader>,
        rules: Array<MapData, CompiledRule>,
        index: HashMap<MapData, IndexKey, u64>,
    ) -> Self {
        let mut maps = Self { header, rules, index, generation: 0, active_slot: None };
        // A policy an earlier agent installed (pinned maps): keep enforcing it, install
        // the next one into the other slot, and continue its generation count.
        if let Ok(header) = maps.header.get(&0, 0) {
            if header.loaded == 1 {
                maps.generation = header.generation;
                maps.active_slot = Some(header.slot);
            }
        }
        maps
    }
}

impl PolicyStore for PolicyMaps {
    /// Install into the inactive slot and flip; returns the new generation.
    fn install(&mut self, policy: &CompiledPolicy) -> Result<u64> {
        let slot = self.active_slot.map_or(0, |s| 1 - s);
        for i in 0..MAX_RULES as u32 {
            let rule = policy.rules.get(i as usize).copied().unwrap_or_default();
            self.rules.set(slot * MAX_RULES as u32 + i, rule, 0).context("writing a rule")?;
        }
        let stale: Vec<IndexKey> =
            self.index.keys().filter_map(Result::ok).filter(|k| k.slot as u32 == slot).collect();
        for key in stale {
            self.index.remove(&key).context("clearing the inactive slot's index")?;
        }
        for ((class, driver, opcode), bits) in &policy.index {
            self.index
                .insert(IndexKey::new(slot, *class, *driver, *opcode), *bits, 0)
                .context("writing the policy index (map full?)")?;
        }
        let generation = self.generation + 1;
        self.header.set(0, policy.header(slot, generation), 0).context("activating the policy")?;
        self.generation = generation;
        self.active_slot = Some(slot);
        Ok(generation)
    }
}
