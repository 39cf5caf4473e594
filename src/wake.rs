//! Wake-ups: how a waiting connection is told "look again".
//!
//! A subscriber that found nothing new leaves a [`Wake`] with the broker, and every publish to
//! its channel calls [`Wake::wake`]; the server model then runs that connection again, and it
//! reads on from its cursor (a wake-up carries no message: see [`crate::broker`]). An answer the
//! broker had to fetch (a Redis reply: [`crate::broker::Pending`], a cold read) comes back the
//! same way.
//!
//! Why not [`std::task::Waker`], which says the same thing: a `Waker` that tells connections
//! apart is an `Arc` per connection (a 48-byte allocation on the event loop, with its worker's
//! address, the slot's token and a flag), a tenth of what an idle WebSocket holds in all
//! (README, "What an idle connection costs"). A [`Wake`] is its server's [`WakeQueue`] and the
//! connection's token in it: 16 bytes, no allocation. The event loop has one queue per worker,
//! and a connection's token is its slot in the worker's table; the thread-per-connection model
//! has one queue per connection thread, whose bell unparks that thread.
//!
//! A queue holds each token once until it is taken, so a thousand publishes before a worker's
//! next turn queue a connection once, and it rings its bell only when it goes from empty to
//! not: one `write(2)` to a worker's eventfd per burst of wake-ups, however many.
//!
//! ## Wake-ups held to the end of a turn
//!
//! A thread woken on its waker's core usually runs at once, before the waker's next
//! instruction: the scheduler favours a thread that slept (Linux's wake-up preemption). An
//! event-loop worker whose turn submits twenty Redis commands, each of which would wake the
//! link's writer, would hand its core to the writer twenty times, and the writer would write
//! one command twenty times: two context switches and a `write(2)` each, where one would do.
//! (Seen with `perf sched` under `benches/redis_hop.rs`: a worker and the writer on one core
//! took turns, 8,791 writer wake-ups in half a second, four commands a write on average.)
//! So a worker marks its turn with a [`Turn`], and a wake-up that may wait for the turn's end
//! ([`ring_after_turn`]) is held until the `Turn` is dropped, before the worker sleeps again.
//! Outside a turn (a connection thread, the link's own threads) it rings at once. The link
//! now goes further: what is held to the turn's end is not the writer's wake-up but the send
//! itself, which the worker makes without waiting while the writer sleeps
//! (`broker::redis::pipeline`).

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// The tokens woken since the server last looked, and the bell that tells it to look.
pub struct WakeQueue {
    woken: Mutex<Woken>,
    bell: Box<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct Woken {
    /// In the order they were first woken.
    tokens: Vec<u32>,
    /// One bit per token: whether it is in `tokens` (a second wake-up adds nothing).
    queued: Vec<u64>,
}

/// A connection's wake-up: its queue and its token there. Cloning it is an atomic increment.
#[derive(Clone)]
pub struct Wake {
    queue: Arc<WakeQueue>,
    token: u32,
}

impl WakeQueue {
    /// A queue whose `bell` is rung when a token is queued into an empty queue: the server
    /// must then [`take`](WakeQueue::take) the tokens. The bell runs on the waking thread (a
    /// publisher, a link to Redis) and outside the queue's lock.
    pub fn new(bell: impl Fn() + Send + Sync + 'static) -> Arc<WakeQueue> {
        Arc::new(WakeQueue { woken: Mutex::default(), bell: Box::new(bell) })
    }

    /// The [`Wake`] that queues `token`.
    pub fn wake_for(self: &Arc<Self>, token: u32) -> Wake {
        Wake { queue: self.clone(), token }
    }

    /// Moves the tokens woken since the last call into `into` (emptied first), each once, in
    /// the order they were woken. A token woken after this is queued again.
    pub fn take(&self, into: &mut Vec<u32>) {
        into.clear();
        let mut woken = lock(&self.woken);
        let Woken { tokens, queued } = &mut *woken;
        for &token in tokens.iter() {
            queued[token as usize / 64] &= !(1 << (token % 64));
        }
        std::mem::swap(tokens, into);
    }

    fn wake(&self, token: u32) {
        let (word, bit) = (token as usize / 64, 1u64 << (token % 64));
        let mut woken = lock(&self.woken);
        if woken.queued.len() <= word {
            woken.queued.resize(word + 1, 0);
        }
        if woken.queued[word] & bit != 0 {
            return;
        }
        woken.queued[word] |= bit;
        woken.tokens.push(token);
        let first = woken.tokens.len() == 1;
        drop(woken);
        if first {
            (self.bell)();
        }
    }
}

impl Wake {
    /// Queues the token, and rings the queue's bell if the queue was empty.
    pub fn wake(&self) {
        self.queue.wake(self.token);
    }

    /// The token this wakes.
    pub fn token(&self) -> u32 {
        self.token
    }
}

/// Two wakes are equal when they queue the same token on the same queue: replacing one with
/// the other would change nothing.
impl PartialEq for Wake {
    fn eq(&self, other: &Wake) -> bool {
        Arc::ptr_eq(&self.queue, &other.queue) && self.token == other.token
    }
}

impl Eq for Wake {}

impl fmt::Debug for Wake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wake").field("token", &self.token).finish_non_exhaustive()
    }
}

impl fmt::Debug for WakeQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WakeQueue").field("woken", &lock(&self.woken).tokens).finish_non_exhaustive()
    }
}

/// A wake-up held to the end of a turn.
type Held = Box<dyn FnOnce()>;

thread_local! {
    /// `Some` while this thread is in a [`Turn`]: the wake-ups held until it ends.
    static HELD: RefCell<Option<Vec<Held>>> = const { RefCell::new(None) };
}

/// A worker's turn: from the moment it wakes up to the moment it waits again. Wake-ups given
/// to [`ring_after_turn`] meanwhile run when it is dropped, in the order given (the module
/// docs, "Wake-ups held to the end of a turn"). A turn begun inside another is part of it:
/// what it holds rings when the outer one ends.
#[must_use = "the held wake-ups ring when the turn is dropped"]
pub struct Turn {
    /// This turn began the thread's turn (and so ends it).
    outermost: bool,
    /// A turn belongs to its thread.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Turn {
    /// Starts this thread's turn.
    pub fn begin() -> Turn {
        let outermost = HELD.with(|held| {
            let mut held = held.borrow_mut();
            let outermost = held.is_none();
            if outermost {
                *held = Some(Vec::new());
            }
            outermost
        });
        Turn { outermost, _not_send: std::marker::PhantomData }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        // Taken out before ringing: a bell that holds another one rings it at once.
        let held = HELD.with(|held| held.borrow_mut().take()).unwrap_or_default();
        for bell in held {
            bell();
        }
    }
}

/// Runs `bell` at the end of this thread's [`Turn`], or now if it is in none.
pub fn ring_after_turn(bell: impl FnOnce() + 'static) {
    let bell = HELD.with(|held| match held.borrow_mut().as_mut() {
        Some(held) => {
            held.push(Box::new(bell));
            None
        }
        None => Some(bell),
    });
    if let Some(bell) = bell {
        bell();
    }
}

#[cfg(test)]
impl WakeQueue {
    /// A queue without a bell, for tests that look at what was woken.
    pub(crate) fn silent() -> Arc<WakeQueue> {
        WakeQueue::new(|| {})
    }

    /// The tokens woken since the last look.
    pub(crate) fn woken(&self) -> Vec<u32> {
        let mut taken = Vec::new();
        self.take(&mut taken);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn queue() -> (Arc<WakeQueue>, Arc<AtomicUsize>) {
        let rings = Arc::new(AtomicUsize::new(0));
        let counter = rings.clone();
        (
            WakeQueue::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            rings,
        )
    }

    #[test]
    fn outside_a_turn_a_held_wake_up_rings_at_once() {
        let rang = Rc::new(Cell::new(0));
        let counter = rang.clone();
        ring_after_turn(move || counter.set(counter.get() + 1));
        assert_eq!(rang.get(), 1);
    }

    #[test]
    fn in_a_turn_wake_ups_ring_when_it_ends_in_the_order_given() {
        let rang = Rc::new(RefCell::new(Vec::new()));
        let turn = Turn::begin();
        for bell in 0..3 {
            let rang = rang.clone();
            ring_after_turn(move || rang.borrow_mut().push(bell));
        }
        assert!(rang.borrow().is_empty(), "held while the turn lasts");
        drop(turn);
        assert_eq!(*rang.borrow(), [0, 1, 2]);
        let after = rang.clone();
        ring_after_turn(move || after.borrow_mut().push(3));
        assert_eq!(*rang.borrow(), [0, 1, 2, 3], "the next one, outside a turn, rings at once");
    }

    #[test]
    fn a_turn_inside_a_turn_holds_its_wake_ups_until_the_outer_one_ends() {
        let rang = Rc::new(Cell::new(0));
        let outer = Turn::begin();
        let inner = Turn::begin();
        let counter = rang.clone();
        ring_after_turn(move || counter.set(counter.get() + 1));
        drop(inner);
        assert_eq!(rang.get(), 0);
        drop(outer);
        assert_eq!(rang.get(), 1);
    }

    #[test]
    fn a_wake_queues_its_token_and_rings_the_bell() {
        let (queue, rings) = queue();
        queue.wake_for(7).wake();
        assert_eq!(queue.woken(), [7]);
        assert_eq!(rings.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_token_woken_twice_before_it_is_taken_is_queued_once() {
        let (queue, rings) = queue();
        let wake = queue.wake_for(3);
        wake.wake();
        wake.wake();
        assert_eq!(queue.woken(), [3]);
        assert_eq!(rings.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_bell_rings_once_per_burst_not_once_per_token() {
        let (queue, rings) = queue();
        for token in [5, 700, 64, 0] {
            queue.wake_for(token).wake();
        }
        assert_eq!(queue.woken(), [5, 700, 64, 0], "in the order woken");
        assert_eq!(rings.load(Ordering::SeqCst), 1);
        queue.wake_for(5).wake();
        assert_eq!(rings.load(Ordering::SeqCst), 2, "an empty queue rings again");
    }

    #[test]
    fn a_token_taken_is_queued_again_by_its_next_wake() {
        let (queue, _) = queue();
        let wake = queue.wake_for(64);
        wake.wake();
        assert_eq!(queue.woken(), [64]);
        wake.wake();
        assert_eq!(queue.woken(), [64], "queued again once taken");
        assert!(queue.woken().is_empty());
    }

    #[test]
    fn wakes_are_equal_when_they_queue_the_same_token_on_the_same_queue() {
        let (a, _) = queue();
        let (b, _) = queue();
        assert_eq!(a.wake_for(1), a.wake_for(1));
        assert_ne!(a.wake_for(1), a.wake_for(2));
        assert_ne!(a.wake_for(1), b.wake_for(1));
    }

    #[test]
    fn a_wake_is_two_words() {
        assert_eq!(std::mem::size_of::<Wake>(), 16);
    }
}
