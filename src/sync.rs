//! The crate's only door to atomics, fences and spin hints.
//!
//! Normally these are `std`'s; under `cfg(loom)` they are loom's, so the loom
//! models in the other modules exercise exactly the operations production
//! code performs. `clippy.toml` bans the raw types everywhere else.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[cfg(loom)]
use loom::sync::atomic as imp;
#[cfg(not(loom))]
use std::sync::atomic as imp;

pub(crate) use std::sync::atomic::Ordering;

/// A memory fence (std's, or loom's).
#[inline(always)]
pub(crate) fn fence(order: Ordering) {
    imp::fence(order)
}

/// A compiler-only fence under std; a full fence under loom, where it
/// stands for the light side of an asymmetric barrier (see `wait.rs`).
#[inline(always)]
pub(crate) fn compiler_fence(order: Ordering) {
    #[cfg(loom)]
    imp::fence(order);
    #[cfg(not(loom))]
    std::sync::atomic::compiler_fence(order);
}

macro_rules! atomic {
    ($name:ident, $int:ty) => {
        /// A transparent wrapper of std's (or loom's) atomic of the same name:
        /// the only way the rest of the crate reaches it.
        #[repr(transparent)]
        #[derive(Debug)]
        pub(crate) struct $name(imp::$name);

        #[allow(dead_code)]
        impl $name {
            #[inline(always)]
            pub(crate) fn new(v: $int) -> Self {
                Self(imp::$name::new(v))
            }
            #[inline(always)]
            pub(crate) fn load(&self, o: Ordering) -> $int {
                self.0.load(o)
            }
            #[inline(always)]
            pub(crate) fn store(&self, v: $int, o: Ordering) {
                self.0.store(v, o)
            }
            #[inline(always)]
            pub(crate) fn fetch_add(&self, v: $int, o: Ordering) -> $int {
                self.0.fetch_add(v, o)
            }
            #[inline(always)]
            pub(crate) fn fetch_sub(&self, v: $int, o: Ordering) -> $int {
                self.0.fetch_sub(v, o)
            }
            #[inline(always)]
            pub(crate) fn fetch_or(&self, v: $int, o: Ordering) -> $int {
                self.0.fetch_or(v, o)
            }
            #[inline(always)]
            pub(crate) fn fetch_and(&self, v: $int, o: Ordering) -> $int {
                self.0.fetch_and(v, o)
            }
            #[inline(always)]
            pub(crate) fn swap(&self, v: $int, o: Ordering) -> $int {
                self.0.swap(v, o)
            }
            #[inline(always)]
            pub(crate) fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.0.compare_exchange(current, new, success, failure)
            }
            /// The address, for futex calls.
            #[cfg(not(loom))]
            #[inline(always)]
            pub(crate) fn as_ptr(&self) -> *mut $int {
                self.0.as_ptr()
            }
            /// View aligned shared memory as an atomic.
            ///
            /// # Safety
            ///
            /// `ptr` is aligned for `$int`, valid for reads and writes for
            /// `'a`, and every access to it that could race with this one is
            /// atomic.
            #[cfg(not(loom))]
            #[inline(always)]
            pub(crate) unsafe fn from_ptr<'a>(ptr: *mut $int) -> &'a Self {
                // SAFETY: `Self` is `repr(transparent)` over the std atomic;
                // the caller upholds `from_ptr`'s contract (see `# Safety`).
                unsafe { &*(imp::$name::from_ptr(ptr) as *const imp::$name as *const Self) }
            }
        }
    };
}

atomic!(AtomicU32, u32);
atomic!(AtomicU64, u64);

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// One iteration of a busy-wait: a CPU pause hint, or a loom yield so the
/// model checker can schedule the thread we are waiting for.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Give the rest of the time slice away (the middle rung of the back-off).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// Counts the iterations of a loom model, for the figures CI prints.
#[cfg(all(test, loom))]
pub(crate) fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(move || {
        n2.fetch_add(1, Ordering::Relaxed);
        f();
    });
    println!(
        "loom model {name}: {} iterations (preemption bound {:?})",
        n.load(Ordering::Relaxed),
        b.preemption_bound
    );
}
