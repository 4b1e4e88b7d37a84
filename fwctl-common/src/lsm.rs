//! What the BPF LSM hook programs return. An LSM hook runs every BPF LSM program attached
//! to it and hands each the return value of the ones before it; a refusal by an earlier
//! program must stay a refusal. This module decides how it is passed on: `-EACCES` as it
//! is, every other refusal as `-EPERM`. fwctl-guard's own refusals are `-EPERM`.
//!
//! The decision returns which refusal, not the errno: the programs return a constant on
//! every path (see [`EarlierVerdict`]). Not for: counting or the return itself (the eBPF
//! `lsm` module).

/// `EPERM` and `EACCES` (include/uapi/asm-generic/errno-base.h), as LSM return values
/// are negated.
pub const EPERM: i64 = 1;
pub const EACCES: i64 = 13;

/// What the BPF LSM programs before this one on the hook decided.
///
/// The program returns `0`, `-EACCES` or `-EPERM` as a literal in each branch, after
/// counting the refusal. Computing the errno instead (or returning without a side effect)
/// lets LLVM fold the branches into `-(x & 1)`, a BPF_NEG whose result verifiers before
/// 6.13 leave unbounded: they refuse the program ("R0 has unknown scalar value").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlierVerdict {
    /// No earlier refusal: this program decides.
    Allowed,
    /// An earlier program returned `-EACCES`: return `-EACCES`.
    DeniedEacces,
    /// An earlier program refused with anything else: return `-EPERM`.
    DeniedOther,
}

/// The verdict of the earlier BPF LSM programs, from the return value they passed on.
#[inline(always)]
pub const fn earlier_verdict(previous: i64) -> EarlierVerdict {
    if previous == 0 {
        EarlierVerdict::Allowed
    } else if previous == -EACCES {
        EarlierVerdict::DeniedEacces
    } else {
        EarlierVerdict::DeniedOther
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_earlier_refusal_lets_this_program_decide() {
        assert_eq!(earlier_verdict(0), EarlierVerdict::Allowed);
    }

    #[test]
    fn eacces_is_kept_and_every_other_refusal_becomes_eperm() {
        assert_eq!(earlier_verdict(-EACCES), EarlierVerdict::DeniedEacces);
        for other in [-EPERM, -22, -4095, -12, 1, 13, i64::MIN, i64::MAX] {
            assert_eq!(earlier_verdict(other), EarlierVerdict::DeniedOther, "{other}");
        }
    }
}
