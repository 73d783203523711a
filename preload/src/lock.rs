//! A lock that is never waited on without bound, and that a forked child
//! can take back from a thread that no longer exists.
//!
//! Audit callbacks already run one at a time under the loader's own lock;
//! this one guards against the few callers outside it (the `dlmopen`
//! wrapper, the `dlerror`, exit and fork handlers). A holder never waits
//! for anything while it holds the lock, so a short wait for it
//! (`lock_within`) ends, unless the holder is this very thread, interrupted
//! by a signal: the lock knows its owner, and such a wait gives up at once.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct TryLock<T> {
    held: AtomicBool,
    /// The holding thread (`pthread_self`), 0 when free: a wait for a lock
    /// this very thread holds would never end.
    owner: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is only through `TryGuard`, which `held` makes unique.
unsafe impl<T: Send> Sync for TryLock<T> {}

impl<T> TryLock<T> {
    pub const fn new(value: T) -> TryLock<T> {
        TryLock { held: AtomicBool::new(false), owner: AtomicUsize::new(0), value: UnsafeCell::new(value) }
    }

    pub fn try_lock(&self) -> Option<TryGuard<'_, T>> {
        self.held.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).ok()?;
        self.owner.store(this_thread(), Ordering::Relaxed);
        Some(TryGuard { lock: self })
    }

    /// Tries until the lock is had or `budget_ns` of monotonic time have
    /// passed: yields first, then sleeps in growing steps, so that a holder
    /// the scheduler has put off (two cores, many threads) gets to finish.
    /// No wait at all when the holder is this very thread, interrupted by a
    /// signal whose handler loads a library (each of that load's callbacks
    /// would wait in turn, for a holder that resumes only after them); the
    /// bound is for the instant between taking the lock and naming its
    /// owner.
    pub fn lock_within(&self, budget_ns: u64) -> Option<TryGuard<'_, T>> {
        if let Some(g) = self.try_lock() {
            return Some(g);
        }
        if self.owner.load(Ordering::Relaxed) == this_thread() {
            return None;
        }
        let start = crate::clock::now_monotonic_ns();
        let mut step_ns: u64 = 1_000;
        for attempt in 0u32.. {
            if let Some(g) = self.try_lock() {
                return Some(g);
            }
            if crate::clock::now_monotonic_ns().saturating_sub(start) >= budget_ns {
                return None;
            }
            if attempt < 64 {
                // SAFETY: sched_yield takes no arguments.
                unsafe { libc::sched_yield() };
            } else {
                sleep_ns(step_ns);
                step_ns = (step_ns * 2).min(1_000_000);
            }
        }
        None
    }

    /// Releases the lock if another thread holds it. Only for the child side
    /// of `fork`, where that thread was not copied. The child's own thread
    /// (the one that forked, from a signal handler perhaps) keeps a hold it
    /// had: the code it interrupted still uses what the lock guards.
    pub fn force_unlock_after_fork(&self) {
        if self.owner.load(Ordering::Relaxed) == this_thread() {
            return;
        }
        self.owner.store(0, Ordering::Relaxed);
        self.held.store(false, Ordering::Release);
    }
}

/// The calling thread, as a number no other live thread has (its thread
/// pointer): cheaper than asking the kernel for its thread id.
fn this_thread() -> usize {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as usize }
}

/// The raw system call, not libc's `nanosleep`: no cancellation point is
/// added inside the job's own `dlmopen`.
fn sleep_ns(ns: u64) {
    let ts = libc::timespec { tv_sec: 0, tv_nsec: ns.min(999_999_999) as libc::c_long };
    // SAFETY: `ts` is a valid timespec; a null remainder is allowed.
    unsafe {
        libc::syscall(libc::SYS_nanosleep, &ts as *const libc::timespec, core::ptr::null_mut::<libc::timespec>())
    };
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
        self.lock.owner.store(0, Ordering::Relaxed);
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
    fn lock_within_waits_for_another_threads_hold_a_bounded_while() {
        static LOCK: TryLock<u32> = TryLock::new(0);
        let (taken_tx, taken) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let g = LOCK.try_lock();
            let _ = taken_tx.send(g.is_some());
            let _ = release_rx.recv();
            std::thread::sleep(std::time::Duration::from_millis(30));
            drop(g);
        });
        assert_eq!(taken.recv().ok(), Some(true));
        let start = crate::clock::now_monotonic_ns();
        assert!(LOCK.lock_within(20_000_000).is_none(), "held all along");
        assert!(crate::clock::now_monotonic_ns() - start >= 20_000_000, "waited its budget");
        let _ = release.send(());
        assert!(LOCK.lock_within(5_000_000_000).is_some(), "the lock, once let go");
        assert!(holder.join().is_ok());
    }

    #[test]
    fn lock_within_gives_up_at_once_on_a_lock_this_thread_holds() {
        let lock = TryLock::new(());
        let g = lock.try_lock();
        let start = crate::clock::now_monotonic_ns();
        assert!(lock.lock_within(5_000_000_000).is_none());
        assert!(crate::clock::now_monotonic_ns() - start < 1_000_000_000, "no wait");
        drop(g);
        assert!(lock.lock_within(0).is_some());
    }

    #[test]
    fn force_unlock_frees_a_lost_holder_but_not_this_threads_own_hold() {
        static LOCK: TryLock<()> = TryLock::new(());
        let lost = std::thread::spawn(|| core::mem::forget(LOCK.try_lock())).join();
        assert!(lost.is_ok());
        assert!(LOCK.try_lock().is_none(), "held by a thread that is gone");
        LOCK.force_unlock_after_fork();
        let mine = LOCK.try_lock();
        assert!(mine.is_some());
        LOCK.force_unlock_after_fork();
        assert!(LOCK.try_lock().is_none(), "this thread's hold stays");
        drop(mine);
        assert!(LOCK.try_lock().is_some());
    }
}
