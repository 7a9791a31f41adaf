//! Test-only kill points (cargo feature `failpoints`).
//!
//! A process started with `RINGWAY_FAILPOINT=name` (or `name@N`, the N-th
//! time it passes there) sends itself SIGKILL at [`failpoint!`] sites of that
//! name: a crash at an exact point of a protocol, for the crash tests.
//! Without the feature the macro expands to nothing.

#[cfg(all(feature = "failpoints", not(loom)))]
pub(crate) fn hit(name: &str) {
    use std::cell::Cell;
    use std::sync::OnceLock;
    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    thread_local!(static HITS: Cell<u64> = const { Cell::new(0) });
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("RINGWAY_FAILPOINT").ok()?;
        Some(match v.split_once('@') {
            Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
            None => (v, 1),
        })
    });
    if let Some((want, nth)) = spec {
        if want == name {
            let n = HITS.with(|h| {
                h.set(h.get() + 1);
                h.get()
            });
            if n >= *nth {
                // SAFETY: getpid has no preconditions.
                let me = unsafe { libc::getpid() };
                // SAFETY: kill has no memory preconditions; SIGKILL ends the
                // process here, which is the point.
                unsafe { libc::kill(me, libc::SIGKILL) };
            }
        }
    }
}

/// Kill the process here if `RINGWAY_FAILPOINT` names this point.
#[allow(unused_macros)] // the handles that use it are not built under loom
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(all(feature = "failpoints", not(loom)))]
        $crate::failpoint::hit($name);
    };
}
pub(crate) use failpoint;
