//! Fuzz-style tests of every decoder: random bytes, random lengths and hostile values
//! through each ioctl's argument layout and each fwctl driver's payload layout. The
//! decoders must never panic, must always land on a known `decode_status`, and must
//! never follow a payload pointer with more than [`PAYLOAD_HEAD`] bytes to read.

extern crate std;

use super::{decode_arg, decode_payload, start, FollowKind, ARG_MAX, PAYLOAD_HEAD};
use crate::{
    abi::{IOCTLS, URING_CMDS},
    model::{decode_status, driver, scope},
};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Mostly random bytes, sometimes the values that break length arithmetic.
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(4) {
            let word: u32 = match self.next() % 8 {
                0 => 0,
                1 => u32::MAX,
                2 => 0x8000_0000,
                3 => (self.next() % 96) as u32, // plausible small lengths
                _ => self.next() as u32,
            };
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = (word >> (8 * i)) as u8;
            }
        }
    }
}

#[test]
fn random_and_hostile_payloads_never_panic_and_end_in_a_known_status() {
    let mut rng = Rng(0x5eed_f00d_cafe_d00d);
    let specs = IOCTLS.iter().chain(URING_CMDS.iter());
    let mut outcomes = [0u32; 8];
    for spec in specs {
        for drv in driver::ALL.iter().copied().chain([0x7f, 0xff]) {
            for _ in 0..2000 {
                let mut arg = [0u8; ARG_MAX];
                rng.fill(&mut arg);
                // A short copy: the rest of the argument buffer is zero, as the hook leaves it.
                let valid = (rng.next() % (ARG_MAX as u64 + 1)) as usize;
                arg[valid..].fill(0);
                let mut command = start(spec, drv);
                let follow = decode_arg(spec, &arg, &mut command);
                if let Some(f) = follow {
                    assert!(f.len as usize <= PAYLOAD_HEAD && f.len > 0, "{} {f:?}", spec.name);
                    assert_eq!(command.decode, decode_status::OK, "a decode error never follows a pointer");
                    let mut head = [0u8; PAYLOAD_HEAD];
                    rng.fill(&mut head);
                    head[f.len as usize..].fill(0);
                    decode_payload(&f, &head, &mut command);
                    if f.kind == FollowKind::FwctlRpc {
                        assert!(command.scope <= scope::DEBUG_WRITE_FULL || command.scope == scope::INVALID);
                    }
                }
                assert!(
                    decode_status::ALL.contains(&command.decode),
                    "{}: status {}",
                    spec.name,
                    command.decode
                );
                outcomes[command.decode as usize] += 1;
            }
        }
    }
    // The generator reaches both sides: decodable and each kind of refusal.
    assert!(outcomes[decode_status::OK as usize] > 0);
    assert!(outcomes[decode_status::TRUNCATED as usize] > 0);
    assert!(outcomes[decode_status::MALFORMED as usize] > 0);
    assert!(outcomes[decode_status::UNKNOWN_LAYOUT as usize] > 0);
}

#[test]
fn every_declared_length_is_clamped_to_the_head() {
    for declared in [0u32, 1, 15, 16, 63, 64, 65, 4096, u32::MAX] {
        let f = super::Follow::new(0x1000, declared, FollowKind::FwctlRpc);
        assert!(f.len as usize <= PAYLOAD_HEAD);
        assert_eq!(f.len, declared.min(PAYLOAD_HEAD as u32));
    }
}
