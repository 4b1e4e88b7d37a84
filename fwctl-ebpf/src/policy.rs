//! The kernel's view of the policy maps, for `fwctl_common::policy::decide`. The rule
//! walk runs under `bpf_loop` (Linux >= 5.17): the verifier checks one rule test instead
//! of unrolling 64 of them (which exceeded its 1M-instruction budget). Not for: the
//! evaluation itself, which is `decide`, shared with `fwctl-guard policy explain`.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel};
use fwctl_common::{
    effects::{declared_effects, EffectsKey, EffectsSource},
    model::Command,
    policy::{
        pack_match, rule_matches, unpack_match, CompiledRule, IndexKey, PolicyHeader, RuleSource, Subject,
        MAX_RULES,
    },
};

use crate::maps::{EFFECTS, POLICY, POLICY_INDEX, RULES};

/// The policy and effects maps as a `RuleSource`: what `decide` reads in the kernel.
pub struct Maps;

/// State shared with the `bpf_loop` callback. The command and subject stay where the hook
/// keeps them (pointers into its frame), so this frame, which the callback's stacks on,
/// stays small: the verifier's 512 bytes cover hook + policy walk + callback together.
#[repr(C)]
struct Walk {
    candidates: u64,
    subject: *const Subject,
    command: *const Command,
    slot: u32,
    /// The first match, `policy::pack_match` (0: none yet).
    found: u32,
}

/// One iteration: test rule `index` if it is a candidate; 1 stops the loop.
extern "C" fn test_rule(index: u32, walk: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer given to it: a live `Walk` on our stack.
    let walk = unsafe { &mut *(walk as *mut Walk) };
    if index >= MAX_RULES as u32 || walk.candidates & (1u64 << index) == 0 {
        return 0;
    }
    let Some(rule) = rule_at(walk.slot, index) else {
        return 0;
    };
    // SAFETY: both point at the hook's live stack frame for the whole bpf_loop call.
    let (command, subject) = unsafe { (&*walk.command, &*walk.subject) };
    if rule_matches(rule, command, subject) {
        walk.found = pack_match(rule.rule_id, rule.action);
        return 1;
    }
    0
}

#[inline(always)]
fn rule_at(slot: u32, index: u32) -> Option<&'static CompiledRule> {
    RULES.get(slot.saturating_mul(MAX_RULES as u32).saturating_add(index))
}

impl EffectsSource for Maps {
    #[inline(always)]
    fn stored_effects(&self, key: &EffectsKey) -> Option<u32> {
        // SAFETY: plain data copied out.
        unsafe { EFFECTS.get(key) }.copied()
    }
}

impl RuleSource for Maps {
    #[inline(always)]
    fn declared_effects(&self, device: u64, command: &Command) -> u32 {
        lookup_effects(device, command)
    }

    #[inline(always)]
    fn candidates(&self, key: &IndexKey) -> u64 {
        // SAFETY: plain data copied out.
        unsafe { POLICY_INDEX.get(key) }.copied().unwrap_or(0)
    }

    #[inline(always)]
    fn first_match(
        &self,
        slot: u32,
        candidates: u64,
        command: &Command,
        subject: &Subject,
    ) -> Option<(u16, u8)> {
        let mut walk = Walk { candidates, subject, command, slot, found: 0 };
        // SAFETY: the callback only touches `walk`, which outlives the call.
        unsafe {
            bpf_loop(
                (64 - candidates.leading_zeros()).min(MAX_RULES as u32),
                test_rule as *mut c_void,
                &mut walk as *mut Walk as *mut c_void,
                0,
            )
        };
        unpack_match(walk.found)
    }

    #[inline(always)]
    fn rule(&self, slot: u32, index: u32) -> Option<&CompiledRule> {
        rule_at(slot, index)
    }
}

/// What the device declares about the command. A subprogram of its own: its two map
/// keys live in a frame beside the rule walk's, not under it.
///
/// The word is copied through `bpf_probe_read_kernel` so the verifier sees an unknown
/// value on every path. Returned directly, some paths give it a constant (`KNOWN` alone: an undeclared
/// opcode), and 6.1's verifier, which checks a bpf_loop callback as if it ran once,
/// pruned the rule walk for that constant and hard-wired the branch as dead: on 6.1
/// `undeclared: true` never matched (caught by the VM suite; 6.12 and 7.2 were right).
/// The copy is on this frame's own stack: a shared scratch slot could be overwritten by
/// another task preempting this one on the same CPU.
#[inline(never)]
fn lookup_effects(device: u64, command: &Command) -> u32 {
    let word = declared_effects(&Maps, device, command);
    let mut opaque = 0u32;
    // SAFETY: copies 4 bytes between two live locals of this frame. The result is not
    // looked at: copying a live local cannot fail, and returning `word` on a failure path
    // would bring the constant back (on failure the word would be 0, "unknown").
    unsafe {
        bpf_probe_read_kernel(&mut opaque as *mut u32 as *mut c_void, 4, &word as *const u32 as *const c_void)
    };
    opaque
}

/// No policy loaded: all zero.
static NO_POLICY: PolicyHeader = PolicyHeader {
    generation: 0,
    slot: 0,
    mode: 0,
    default_action: 0,
    on_undecodable: 0,
    loaded: 0,
    uses_effects: 0,
    on_toctou: 0,
    _pad: [0; 6],
};

/// The active policy's header (all zero, i.e. no policy, until the agent loads one).
#[inline(always)]
pub fn header() -> &'static PolicyHeader {
    POLICY.get(0).unwrap_or(&NO_POLICY)
}
