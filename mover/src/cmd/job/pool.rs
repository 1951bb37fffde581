//! The bounded pool a job's transfers run in: `concurrency` worker threads take work items in file order
//! from one queue, so at most that many pushes (or dry runs) run at once and a slow one holds up only
//! its own worker.
//!
//! A work item is a transfer to some of its destinations ([`work_items`]): all of them at once (a fan-out
//! push, which reads the sources once for every destination) or, for a striped transfer, one each. An
//! item returns one result per destination, so the summary and the events stay per destination.

use std::collections::VecDeque;
use std::sync::Mutex;

/// A transfer (its index in the job) to some of its destinations (indexes into its `to`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    /// Index of the transfer.
    pub transfer: usize,
    /// Indexes of the destinations this item serves.
    pub dests: Vec<usize>,
}

/// One item per transfer x destination, in file order; `dests[t]` is transfer `t`'s destination count.
pub fn one_per_destination(dests: &[usize]) -> Vec<WorkItem> {
    let per = |(transfer, &n): (usize, &usize)| (0..n).map(move |d| WorkItem { transfer, dests: vec![d] });
    dests.iter().enumerate().flat_map(per).collect()
}

/// The items of a job, in file order: `fans[t]` is transfer `t`'s destination count and whether they go
/// as one fan-out (one item for all) or one item each.
pub fn work_items(fans: &[(usize, bool)]) -> Vec<WorkItem> {
    let per = |(transfer, &(n, fan)): (usize, &(usize, bool))| -> Vec<WorkItem> {
        if fan && n > 1 {
            vec![WorkItem { transfer, dests: (0..n).collect() }]
        } else {
            (0..n).map(|d| WorkItem { transfer, dests: vec![d] }).collect()
        }
    };
    fans.iter().enumerate().flat_map(per).collect()
}

/// An item once run, with its results; `None` until then.
type Finished<T> = Option<(WorkItem, Vec<T>)>;

/// Runs `work` on every item with at most `concurrency` at once; returns, in item order, each item's
/// results (one per destination it served), tagged with `(transfer, destination)`.
pub fn run_pool<T: Send>(
    items: Vec<WorkItem>,
    concurrency: usize,
    work: &(dyn Fn(&WorkItem) -> Vec<T> + Sync),
) -> Vec<((usize, usize), T)> {
    assert!(concurrency > 0, "a pool of no workers");
    let count = items.len();
    let queue: Mutex<VecDeque<(usize, WorkItem)>> = Mutex::new(items.into_iter().enumerate().collect());
    let done: Mutex<Vec<Finished<T>>> = Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..concurrency.min(count) {
            scope.spawn(|| loop {
                // The lock is held only to take the next item, never while it runs.
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some((at, item)) = next else { return };
                let results = work(&item);
                assert_eq!(results.len(), item.dests.len(), "one result per destination");
                done.lock().unwrap_or_else(|e| e.into_inner())[at] = Some((item, results));
            });
        }
    });
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    for (item, results) in done.into_iter().flatten() {
        out.extend(item.dests.iter().map(|&d| (item.transfer, d)).zip(results));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn items_come_one_per_destination_in_file_order() {
        let items = one_per_destination(&[2, 1]);
        let pairs: Vec<(usize, Vec<usize>)> = items.into_iter().map(|i| (i.transfer, i.dests)).collect();
        assert_eq!(pairs, [(0, vec![0]), (0, vec![1]), (1, vec![0])]);
    }

    #[test]
    fn a_fan_out_is_one_item_and_a_striped_transfer_one_per_destination() {
        let items = work_items(&[(3, true), (2, false), (1, true)]);
        let pairs: Vec<(usize, Vec<usize>)> = items.into_iter().map(|i| (i.transfer, i.dests)).collect();
        assert_eq!(pairs, [(0, vec![0, 1, 2]), (1, vec![0]), (1, vec![1]), (2, vec![0])]);
    }

    #[test]
    fn at_most_concurrency_run_at_once_and_results_keep_their_order() {
        let (running, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let work = |item: &WorkItem| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            // Later items finish first: the order of the results must not follow the finishing order.
            std::thread::sleep(Duration::from_millis(40 - 5 * item.transfer as u64));
            running.fetch_sub(1, Ordering::SeqCst);
            vec![item.transfer * 10]
        };
        let out = run_pool(one_per_destination(&[1; 6]), 3, &work);
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        let got: Vec<((usize, usize), usize)> = out;
        assert_eq!(got, (0..6).map(|t| ((t, 0), t * 10)).collect::<Vec<_>>());
        let out = run_pool(one_per_destination(&[1, 1]), 64, &|i: &WorkItem| vec![i.transfer]);
        assert_eq!(out.len(), 2, "more workers than items is fine");
    }
}
