//! Polling until something holds: device probing under TCG, metrics catching up.

use std::time::{Duration, Instant};

/// Polls `condition` every 100 ms for up to `timeout`; whether it came true.
pub fn until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
