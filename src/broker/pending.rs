//! A broker's answer that may come later: [`Pending`], and the [`Completer`] that fills it.
//!
//! The memory broker answers a publish at once, so its [`Pending`] is born ready
//! ([`Pending::ready`]): no allocation, no lock, nothing to wait for. The Redis broker answers
//! when Redis does: it hands the caller a [`Pending`] and gives the matching [`Completer`] to
//! its link to Redis, whose thread fills it with the reply and wakes the [`Wake`] the caller
//! registered by polling, exactly as a broker message wakes a subscriber. A worker thread
//! therefore never waits for Redis: it polls, gets `Pending`, and goes on with other clients.
//!
//! Nothing can hang on it: a [`Completer`] dropped without an answer (its command failed, the
//! link shut down) resolves the [`Pending`] to [`BrokerError::Unavailable`], so the caller is
//! always told, and a caller that gives up first just drops its [`Pending`]; the late answer
//! is then discarded.

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::task::Poll;

use super::BrokerError;
use crate::sync::lock;
use crate::wake::Wake;

/// A one-shot result: ready now, or filled later by its [`Completer`].
#[derive(Debug)]
pub struct Pending<T> {
    state: State<T>,
}

#[derive(Debug)]
enum State<T> {
    /// Answered at once (the memory broker); taken by the first `poll` that sees it.
    Ready(Option<Result<T, BrokerError>>),
    /// Answered later, through the shared slot.
    Later(Arc<Mutex<Slot<T>>>),
}

/// What the [`Pending`] and its [`Completer`] share.
#[derive(Debug)]
struct Slot<T> {
    result: Option<Result<T, BrokerError>>,
    /// Who to wake when the result lands: the last wake `poll` was given.
    wake: Option<Wake>,
}

/// The writing end of a [`Pending`]: [`Completer::complete`] fills it once and wakes its
/// owner. Dropped unfilled, it fills it with [`BrokerError::Unavailable`].
#[derive(Debug)]
pub struct Completer<T> {
    slot: Option<Arc<Mutex<Slot<T>>>>,
}

impl<T> Pending<T> {
    /// An answer known now.
    pub fn ready(result: Result<T, BrokerError>) -> Pending<T> {
        Pending { state: State::Ready(Some(result)) }
    }

    /// An answer to come: the [`Pending`] for the caller, the [`Completer`] for whoever will
    /// know it.
    pub fn later() -> (Pending<T>, Completer<T>) {
        let slot = Arc::new(Mutex::new(Slot { result: None, wake: None }));
        (Pending { state: State::Later(slot.clone()) }, Completer { slot: Some(slot) })
    }

    /// The result if it is there; otherwise `wake` is woken once it is. A result is handed
    /// out once: polling again after `Ready` gives `Unavailable`.
    pub fn poll(&mut self, wake: &Wake) -> Poll<Result<T, BrokerError>> {
        let taken = || Err(BrokerError::Unavailable("answer already taken".into()));
        match &mut self.state {
            State::Ready(result) => Poll::Ready(result.take().unwrap_or_else(taken)),
            State::Later(slot) => {
                let mut slot = lock(slot);
                match slot.result.take() {
                    Some(result) => {
                        // Answered: the next poll must not wait for a second answer.
                        drop(slot);
                        self.state = State::Ready(None);
                        Poll::Ready(result)
                    }
                    None => {
                        if !slot.wake.as_ref().is_some_and(|w| w == wake) {
                            slot.wake = Some(wake.clone());
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl<T> Completer<T> {
    /// Fills the [`Pending`] and wakes whoever polled it (outside the lock: a wake-up rings its
    /// server's bell, e.g. writes an eventfd).
    pub fn complete(mut self, result: Result<T, BrokerError>) {
        self.fill(result);
    }

    fn fill(&mut self, result: Result<T, BrokerError>) {
        let Some(slot) = self.slot.take() else { return };
        let wake = {
            let mut slot = lock(&slot);
            slot.result = Some(result);
            slot.wake.take()
        };
        if let Some(wake) = wake {
            wake.wake();
        }
    }
}

impl<T> Drop for Completer<T> {
    /// Never leaves its [`Pending`] waiting forever.
    fn drop(&mut self) {
        self.fill(Err(BrokerError::Unavailable("no answer from the broker".into())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake::WakeQueue;

    /// A wake, and the queue that shows whether it was woken.
    fn counting() -> (Wake, Arc<WakeQueue>) {
        let queue = WakeQueue::silent();
        (queue.wake_for(0), queue)
    }

    #[test]
    fn a_ready_answer_is_had_at_the_first_poll_without_waking_anyone() {
        let (wake, count) = counting();
        let mut pending = Pending::ready(Ok(7));
        assert_eq!(pending.poll(&wake), Poll::Ready(Ok(7)));
        assert_eq!(count.woken().len(), 0);
    }

    #[test]
    fn a_later_answer_wakes_the_poller_and_is_then_ready() {
        let (wake, count) = counting();
        let (mut pending, completer) = Pending::later();
        assert_eq!(pending.poll(&wake), Poll::Pending);
        completer.complete(Ok("id"));
        assert_eq!(count.woken().len(), 1, "woken once");
        assert_eq!(pending.poll(&wake), Poll::Ready(Ok("id")));
    }

    #[test]
    fn an_answer_that_lands_before_the_first_poll_is_ready_at_it() {
        let (wake, count) = counting();
        let (mut pending, completer) = Pending::later();
        completer.complete(Ok(1));
        assert_eq!(pending.poll(&wake), Poll::Ready(Ok(1)));
        assert_eq!(count.woken().len(), 0, "nobody to wake yet");
    }

    #[test]
    fn a_completer_dropped_unfilled_resolves_to_unavailable_never_hangs() {
        let (wake, count) = counting();
        let (mut pending, completer) = Pending::<u8>::later();
        assert!(pending.poll(&wake).is_pending());
        drop(completer);
        assert_eq!(count.woken().len(), 1);
        assert!(matches!(pending.poll(&wake), Poll::Ready(Err(BrokerError::Unavailable(_)))));
    }

    #[test]
    fn a_late_answer_to_a_dropped_pending_is_discarded() {
        let (pending, completer) = Pending::later();
        drop(pending);
        completer.complete(Ok(3)); // nobody listens; nothing panics
    }
}
