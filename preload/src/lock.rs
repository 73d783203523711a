//! A lock that is only ever tried, never waited on, and that a forked child can
//! take back from a thread that no longer exists.
//!
//! Audit callbacks already run one at a time under the loader's own lock; this
//! one only guards against the few callers outside it (the exit and fork
//! handlers). Waiting could deadlock a job, so a busy lock costs one event
//! instead.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

pub struct TryLock<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is only through `TryGuard`, which `held` makes unique.
unsafe impl<T: Send> Sync for TryLock<T> {}

impl<T> TryLock<T> {
    pub const fn new(value: T) -> TryLock<T> {
        TryLock { held: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    pub fn try_lock(&self) -> Option<TryGuard<'_, T>> {
        self.held
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| TryGuard { lock: self })
    }

    /// Releases the lock whoever holds it. Only for the child side of `fork`,
    /// where the thread that held it was not copied.
    pub fn force_unlock_after_fork(&self) {
        self.held.store(false, Ordering::Release);
    }
}

pub struct TryGuard<'a, T> {
    lock: &'a TryLock<T>,
}

impl<T> core::ops::Deref for TryGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `held` is ours.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for TryGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for TryGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.held.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_try_fails_until_release() {
        let lock = TryLock::new(1);
        let mut g = lock.try_lock();
        assert!(lock.try_lock().is_none());
        if let Some(g) = g.as_mut() {
            **g += 1;
        }
        drop(g);
        assert_eq!(lock.try_lock().map(|g| *g), Some(2));
    }

    #[test]
    fn force_unlock_frees_a_lost_holder() {
        let lock = TryLock::new(());
        let g = lock.try_lock();
        core::mem::forget(g);
        assert!(lock.try_lock().is_none());
        lock.force_unlock_after_fork();
        assert!(lock.try_lock().is_some());
    }
}
