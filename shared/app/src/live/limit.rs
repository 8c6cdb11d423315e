//! Rate limits of the chat's public side: token buckets keyed by client IP and by
//! session, in memory. Written here rather than taken from a crate (governor): a keyed
//! bucket is twenty lines, and it needs pruning by idle time that we control.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// One limit: `burst` at once, then `per_minute`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: f64,
    pub per_minute: f64,
}

/// New connections per client IP.
pub const CONNECTS_PER_IP: Rate = Rate { burst: 20.0, per_minute: 30.0 };
/// Messages per client IP, whatever the session.
pub const MESSAGES_PER_IP: Rate = Rate { burst: 20.0, per_minute: 40.0 };
/// Messages per chat session.
pub const MESSAGES_PER_SESSION: Rate = Rate { burst: 10.0, per_minute: 20.0 };
/// Other frames (typing, hello) per connection's IP.
pub const FRAMES_PER_IP: Rate = Rate { burst: 60.0, per_minute: 240.0 };

#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    /// Takes one token from the bucket `key` (made full on first use); false when empty.
    pub fn allow(&self, key: &str, rate: Rate) -> bool {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.len() > 100_000 {
            // Idle buckets are full again: forgetting them changes nothing.
            b.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 600);
        }
        let (tokens, at) = b.entry(key.to_string()).or_insert((rate.burst, now));
        let refill = now.duration_since(*at).as_secs_f64() * rate.per_minute / 60.0;
        *tokens = (*tokens + refill).min(rate.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_and_other_keys_unaffected() {
        let l = Limiter::default();
        let r = Rate { burst: 3.0, per_minute: 1.0 };
        assert!((0..3).all(|_| l.allow("a", r)));
        assert!(!l.allow("a", r));
        assert!(l.allow("b", r));
    }
}
