//! What a receiving daemon remembers of its striped transfers, for `mover status ID` (PROTOCOL.md §8.6):
//! a detached sender (`push --via ... --detach`) has left, and this is where the outcome is found.

use crate::wire::control::{transfer_state, TransferStatus};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Ended transfers kept (the oldest is forgotten first); running ones are always kept.
pub const MAX_ENDED_TRANSFERS: usize = 4096;

/// The daemon's striped transfers by id; shared by every session thread.
#[derive(Default, Debug)]
pub struct StripeBook {
    inner: Mutex<Book>,
}

#[derive(Default, Debug)]
struct Book {
    by_id: HashMap<String, TransferStatus>,
    ended: VecDeque<String>,
}

impl StripeBook {
    /// Records `status` for transfer `id` (32 hex digits).
    pub fn update(&self, id: &str, status: TransferStatus) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ended = status.state == transfer_state::DONE || status.state == transfer_state::FAILED;
        b.by_id.insert(id.to_string(), status);
        if ended {
            b.ended.push_back(id.to_string());
            while b.ended.len() > MAX_ENDED_TRANSFERS {
                if let Some(old) = b.ended.pop_front() {
                    b.by_id.remove(&old);
                }
            }
        }
    }

    /// What is known of transfer `id` (state `UNKNOWN` if nothing).
    pub fn get(&self, id: &str) -> TransferStatus {
        let b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        b.by_id.get(id).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_transfers_are_kept_up_to_the_bound() {
        let book = StripeBook::default();
        book.update("run", TransferStatus { state: transfer_state::RUNNING, ..Default::default() });
        for i in 0..MAX_ENDED_TRANSFERS + 3 {
            book.update(&format!("t{i}"), TransferStatus { state: transfer_state::DONE, ..Default::default() });
        }
        assert_eq!(book.get("t0").state, transfer_state::UNKNOWN);
        assert_eq!(book.get(&format!("t{}", MAX_ENDED_TRANSFERS + 2)).state, transfer_state::DONE);
        assert_eq!(book.get("run").state, transfer_state::RUNNING);
    }
}
