//! Locking that outlives a panic in another thread.
//!
//! A [`std::sync::Mutex`] is *poisoned* when a thread panics while holding it, and from then on
//! `lock()` answers with an error: a warning that the data may be half-updated. The locks in
//! this crate are shared by many connections (a broker's channels, the stats, the rate limits,
//! an event-loop worker's queues), and the updates made under them leave their data
//! consistent at each step (a counter bumped, a queue pushed or taken, a table entry inserted
//! or removed), so a panicking thread leaves no half-update behind. Taking the warning as an
//! error would only spread one connection's bug to every thread that takes the same lock, and
//! so to the whole server. [`lock`] and [`try_lock`] take the data either way.

#![forbid(unsafe_code)]

use std::sync::{Mutex, MutexGuard, TryLockError};

/// Locks `mutex`, even if a thread panicked while holding it (see the module documentation).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Locks `mutex` like [`lock`], without waiting: `None` if another thread holds it.
pub fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_still_gives_its_data() {
        let mutex = Mutex::new(1);
        let panicked = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut guard = mutex.lock().unwrap();
                    *guard = 2;
                    panic!("poisons the mutex on purpose");
                })
                .join()
        });
        assert!(panicked.is_err() && mutex.is_poisoned());
        assert_eq!(*lock(&mutex), 2);
        assert_eq!(try_lock(&mutex).map(|guard| *guard), Some(2));
    }

    #[test]
    fn try_lock_does_not_wait_for_a_held_mutex() {
        let mutex = Mutex::new(());
        let _held = lock(&mutex);
        assert!(try_lock(&mutex).is_none());
    }
}
