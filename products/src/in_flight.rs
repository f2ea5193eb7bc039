//! The buys of this process that are waiting for orders, by user and `Idempotency-Key`, so a
//! second request with the same key answers 409 instead of racing the first.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use common::ids::UserId;

use crate::domain::IdempotencyKey;

type Slot = (UserId, IdempotencyKey);

/// The set of claimed keys. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    slots: Arc<Mutex<HashSet<Slot>>>,
}

impl InFlight {
    /// Claims `key` for `user`; `None` when it is already claimed. The claim lasts until the
    /// guard is dropped, which also happens when the request is cancelled mid-way.
    pub fn claim(&self, user: UserId, key: IdempotencyKey) -> Option<InFlightGuard> {
        let slot = (user, key);
        let fresh = self.lock().insert(slot.clone());
        fresh.then(|| InFlightGuard {
            owner: self.clone(),
            slot,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Slot>> {
        // The set stays consistent even if a holder panicked: every operation is one call.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A claimed key; dropping it releases the key.
#[derive(Debug)]
pub struct InFlightGuard {
    owner: InFlight,
    slot: Slot,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IdempotencyKey {
        IdempotencyKey::try_from(s).unwrap()
    }

    #[test]
    fn a_key_cannot_be_claimed_twice_until_released() {
        let in_flight = InFlight::default();
        let user = UserId::new();
        let guard = in_flight.claim(user, key("k1")).expect("first claim");
        assert!(in_flight.claim(user, key("k1")).is_none());
        drop(guard);
        assert!(in_flight.claim(user, key("k1")).is_some());
    }

    #[test]
    fn the_same_key_of_different_users_does_not_collide() {
        let in_flight = InFlight::default();
        let _a = in_flight.claim(UserId::new(), key("k")).unwrap();
        assert!(in_flight.claim(UserId::new(), key("k")).is_some());
    }

    #[tokio::test]
    async fn a_cancelled_request_releases_its_key() {
        let in_flight = InFlight::default();
        let user = UserId::new();
        let held = in_flight.clone();
        let task = tokio::spawn(async move {
            let _guard = held.claim(user, key("k")).unwrap();
            std::future::pending::<()>().await;
        });
        yield_until(|| in_flight.claim(user, key("k")).is_none()).await;
        task.abort();
        let _ = task.await;
        assert!(in_flight.claim(user, key("k")).is_some());
    }

    async fn yield_until(mut claimed: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if claimed() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the task never claimed its key");
    }
}
