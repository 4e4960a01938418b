//! Group commit: items from concurrent callers written together, each caller returning with its
//! own answer once the write that held its item is done. See [`GroupCommit`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Batches the items of concurrent callers into shared writes, by leader and followers.
///
/// A caller queues its item. If no write is under way, it becomes the *leader*: it takes the
/// queued items (its own and any that arrived meanwhile, up to `max_batch`), writes them in one
/// go without holding the queue's lock, then publishes one answer per item and wakes the
/// waiting callers. While a leader writes, later callers queue their items and wait; when it is
/// done, those whose items it wrote take their answers and return, and one of the others leads
/// the next write with everything queued during the previous one. So a caller alone writes
/// at once (no added latency), and under load each write carries every item that arrived while
/// the previous write waited for the disk.
///
/// Every caller returns only with the answer of the write that held its item. If a leader's
/// write panics, the callers whose items it held get `lost()` as their answer (the panic goes
/// on in the leader's own thread), and the next caller leads.
pub(crate) struct GroupCommit<T, A> {
    queue: Mutex<Queue<T, A>>,
    /// Signalled when a leader has published its answers.
    finished: Condvar,
    max_batch: usize,
    lost: fn() -> A,
}

struct Queue<T, A> {
    /// Items not yet taken by a leader, oldest first, with their callers' tickets.
    pending: VecDeque<(u64, T)>,
    next_ticket: u64,
    /// Whether a leader is writing now.
    leading: bool,
    /// Answers not yet collected by their callers, by ticket.
    answers: HashMap<u64, A>,
}

impl<T, A> fmt::Debug for GroupCommit<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCommit")
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl<T, A> GroupCommit<T, A> {
    /// Writes at most `max_batch` (at least 1) items at once; `lost` answers callers whose
    /// items were in a write that panicked.
    pub(crate) fn new(max_batch: usize, lost: fn() -> A) -> GroupCommit<T, A> {
        GroupCommit {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                next_ticket: 0,
                leading: false,
                answers: HashMap::new(),
            }),
            finished: Condvar::new(),
            max_batch: max_batch.max(1),
            lost,
        }
    }

    /// Queues `item` and returns its answer once a write that held it is done, leading writes
    /// as needed. `write` writes a batch and returns one answer per item, in order.
    pub(crate) fn submit(&self, item: T, mut write: impl FnMut(&[T]) -> Vec<A>) -> A {
        let mut queue = self.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket = queue.next_ticket.wrapping_add(1);
        queue.pending.push_back((ticket, item));
        loop {
            if let Some(answer) = queue.answers.remove(&ticket) {
                return answer;
            }
            if queue.leading {
                queue = self
                    .finished
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead. Our item is among the taken ones unless more than `max_batch` were queued
            // before it; then we go round again.
            let take = queue.pending.len().min(self.max_batch);
            let (tickets, items): (Vec<u64>, Vec<T>) = queue.pending.drain(..take).unzip();
            queue.leading = true;
            drop(queue);
            let mut lead = Lead {
                group: self,
                tickets,
                answers: Vec::new(),
            };
            lead.answers = write(&items);
            drop(lead);
            queue = self.lock();
        }
    }

    /// The queue. Its state is consistent whenever the lock is released (nothing in between
    /// can panic but an allocation), so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, Queue<T, A>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A write under way. Dropping it publishes its answers (or `lost()` for those the write did
/// not give, as when it panicked), ends the lead and wakes the waiting callers.
struct Lead<'g, T, A> {
    group: &'g GroupCommit<T, A>,
    tickets: Vec<u64>,
    answers: Vec<A>,
}

impl<T, A> Drop for Lead<'_, T, A> {
    fn drop(&mut self) {
        let mut answers = std::mem::take(&mut self.answers).into_iter();
        let mut queue = self.group.lock();
        for ticket in self.tickets.drain(..) {
            let answer = answers.next().unwrap_or_else(self.group.lost);
            queue.answers.insert(ticket, answer);
        }
        queue.leading = false;
        drop(queue);
        self.group.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::thread;
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_caller_gets_the_answer_for_its_own_item() {
        let group = GroupCommit::<u32, u32>::new(4, || u32::MAX);
        let writes = AtomicUsize::new(0);
        let barrier = Barrier::new(32);
        thread::scope(|scope| {
            for n in 0..32u32 {
                let (group, writes, barrier) = (&group, &writes, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let answer = group.submit(n, |batch| {
                        assert!(!batch.is_empty() && batch.len() <= 4);
                        writes.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(5));
                        batch.iter().map(|item| item * 10).collect()
                    });
                    assert_eq!(answer, n * 10);
                });
            }
        });
        let writes = writes.into_inner();
        assert!((8..32).contains(&writes), "{writes} writes for 32 items");
        let queue = group.lock();
        assert!(queue.pending.is_empty() && queue.answers.is_empty() && !queue.leading);
    }

    #[test]
    fn a_panicking_write_answers_its_items_with_lost_and_the_next_caller_leads() {
        let group = GroupCommit::<u32, u32>::new(8, || u32::MAX);
        let panicked = thread::scope(|scope| {
            scope
                .spawn(|| group.submit(1, |_| panic!("write failed")))
                .join()
        });
        assert!(panicked.is_err());
        assert_eq!(group.submit(2, |batch| batch.to_vec()), 2);
        // Short answers are filled in too.
        assert_eq!(group.submit(3, |_| Vec::new()), u32::MAX);
    }
}
