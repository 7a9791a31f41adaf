//! `CounterMap`: named `i64` counters in shared memory — the tutorial's
//! `Manager().dict()` + `Lock`, with no server process and no stuck lock.
//!
//! ```
//! use ringway::counters::CounterMap;
//! # let name = format!("doc-counters-{}", std::process::id());
//! let map = CounterMap::create(&name, 64)?;   // any process may open it
//! map.set("count", 100)?;
//! assert_eq!(map.add("count", -1)?, 99);     // lock-free
//! {
//!     let g = map.lock()?;                   // the tutorial's `with lock:`
//!     let v = g.get("count")?.unwrap_or(0);
//!     g.set("count", v - 1)?;
//! }
//! assert_eq!(map.get("count")?, Some(98));
//! # Ok::<(), ringway::Error>(())
//! ```
//!
//! # Table
//!
//! A fixed number of 128-byte entries (open addressing, linear probing,
//! FNV-1a of the key): `state` u32 (0 empty, 2 live, 3 removed), `key_len`
//! u32, `value` i64 (atomic), `key` (up to 64 bytes). A new key is inserted
//! under the map's lock (key first, then `state = live` with Release);
//! `get`/`add`/`set`/`compare_exchange` on an existing key are lock-free.
//! Removed entries are not reused (a cached [`Counter`] can never alias
//! another key), so a map that churns keys fills up: size it for the keys
//! it will ever hold. Every probe is bounded by the capacity, and every
//! state and length read from the table is checked: a corrupt table gives
//! [`Error::Corrupted`], never a hang or an out-of-bounds access.

use crate::error::{Error, Result};
use crate::header::{Header, Kind, LINE};
use crate::lock::{LockGuard, RawLock, LOCK_ABI, LOCK_BYTES};
use crate::options::Options;
use crate::region::{word, Region};
use crate::segment::{Segment, Spec};
use crate::sync::{AtomicU64, Ordering};
use std::os::fd::BorrowedFd;

/// Longest key, in bytes.
pub const MAX_KEY: usize = 64;
pub(crate) const ENTRY: usize = 128;
const EMPTY: u32 = 0;
const LIVE: u32 = 2;
const REMOVED: u32 = 3;
const MAX_ENTRIES: u64 = 1 << 24;

fn area_size(cap: u64) -> usize {
    LOCK_BYTES + LINE + cap as usize * ENTRY
}

pub(crate) fn validate(h: &Header) -> std::result::Result<(), (&'static str, String)> {
    let cap = h.param_a;
    if !cap.is_power_of_two() || !(1..=MAX_ENTRIES).contains(&cap) {
        return Err((
            "param_a",
            format!("capacity {cap} is not a power of two in 1..=2^24"),
        ));
    }
    if h.param_b != LOCK_ABI {
        return Err((
            "param_b",
            format!(
                "lock ABI {:#x}, this build's is {LOCK_ABI:#x} (another C library?)",
                h.param_b
            ),
        ));
    }
    let want = h.kind_off() as u64 + area_size(cap) as u64;
    if h.total_size != want {
        return Err((
            "total_size",
            format!("{} bytes, but {cap} entries need {want}", h.total_size),
        ));
    }
    Ok(())
}

fn fnv(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A map of named counters in one segment. `Send + Sync`: every operation
/// takes `&self`.
#[derive(Debug)]
pub struct CounterMap {
    seg: Segment,
    /// Offset of entry 0.
    entries: usize,
    cap: u64,
    lock: RawLock,
}

/// What a probe found.
enum Probe {
    /// The key's entry.
    Found(usize),
    /// Not there; the first empty entry of its chain (if any).
    Absent(Option<usize>),
}

// The seal's hooks take crate-private types: nobody outside can
// name them (see `options::sealed`).
#[allow(private_interfaces)]
impl crate::options::Sealed for CounterMap {
    const KIND: Kind = Kind::Counters;
    const VALIDATE: crate::segment::Validator = validate;
    fn create_segment(name: Option<&str>, o: &Options) -> Result<Segment> {
        let cap = crate::size::pow2_in("capacity (keys)", o.map_keys()?, 1, MAX_ENTRIES)?;
        let spec = Spec {
            kind: Kind::Counters,
            param_a: cap,
            param_b: LOCK_ABI,
            peer_slots: 1,
            kind_size: area_size(cap),
        };
        let lock = RawLock::at(crate::header::kind_off(1));
        Segment::create_with(name, spec, o.mode_bits(), &|seg| lock.init(seg.region()))
    }
    fn open_matching(name: &str, o: &Options) -> Result<Segment> {
        let cap = crate::size::pow2_in("capacity (keys)", o.map_keys()?, 1, MAX_ENTRIES)?;
        Segment::open_matching(name, Kind::Counters, validate, (cap, LOCK_ABI), |c, _| {
            format!("{c} keys")
        })
    }
    fn from_segment(seg: Segment, _: bool, _: &Options) -> Result<CounterMap> {
        Ok(CounterMap::from_parts(seg))
    }
}

impl crate::options::Handle for CounterMap {}

impl CounterMap {
    /// Create the named map with room for `capacity` keys (rounded up to a
    /// power of two). The name goes with the last holder.
    pub fn create(name: &str, capacity: usize) -> Result<CounterMap> {
        Options::new().keys(capacity).create(name)
    }

    /// Create an anonymous map (a memfd); share it by fd.
    pub fn create_anonymous(capacity: usize) -> Result<CounterMap> {
        Options::new().keys(capacity).create_anonymous()
    }

    /// Open the named map.
    pub fn open(name: &str) -> Result<CounterMap> {
        Options::new().open(name)
    }

    /// Open the named map, waiting as long as it takes for it to be
    /// created (a stale map of that name is waited past).
    pub fn open_wait(name: &str) -> Result<CounterMap> {
        Options::new().open_wait().open(name)
    }

    /// [`open_wait`](Self::open_wait), giving up after `timeout`.
    pub fn open_timeout(name: &str, timeout: std::time::Duration) -> Result<CounterMap> {
        Options::new().open_timeout(timeout).open(name)
    }

    /// Open the named map if it exists (with room for as many keys, or
    /// `Mismatch`), or create it: every worker can call this.
    ///
    /// ```
    /// use ringway::counters::CounterMap;
    /// # let name = format!("doc-counters-ooc-{}", std::process::id());
    /// // Every worker runs the same code; the first one creates the map.
    /// let worker = |n: i64| -> ringway::Result<()> {
    ///     let map = CounterMap::open_or_create(&name, 64)?;
    ///     map.add("count", -n)?;
    ///     Ok(())
    /// };
    /// let keep = CounterMap::open_or_create(&name, 64)?; // holds it open here
    /// keep.set("count", 100)?;
    /// worker(30)?;
    /// worker(70)?;
    /// assert_eq!(keep.get("count")?, Some(0));
    /// # Ok::<(), ringway::Error>(())
    /// ```
    pub fn open_or_create(name: &str, capacity: usize) -> Result<CounterMap> {
        Options::new().keys(capacity).open_or_create(name)
    }

    /// Let the children `cmd` spawns open this map with
    /// [`from_inherited`](Self::from_inherited)`(key)`.
    pub fn pass_to(&self, cmd: &mut std::process::Command, key: &str) -> Result<()> {
        crate::inherit::pass(self.segment_fd(), cmd, key)
    }

    /// Open the map a parent passed with `pass_to(.., key)`.
    pub fn from_inherited(key: &str) -> Result<CounterMap> {
        CounterMap::from_fd(std::os::fd::AsFd::as_fd(&crate::inherit::take(key)?))
    }

    /// Open the map behind `fd`.
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<CounterMap> {
        Options::new().from_fd(fd)
    }

    fn from_parts(mut seg: Segment) -> CounterMap {
        seg.set_keep(crate::segment::keep_nothing);
        let base = seg.header().kind_off();
        CounterMap {
            entries: base + LOCK_BYTES + LINE,
            cap: seg.header().param_a,
            lock: RawLock::at(base),
            seg,
        }
    }

    /// The segment's file descriptor (close-on-exec).
    pub fn segment_fd(&self) -> BorrowedFd<'_> {
        self.seg.fd()
    }

    /// How many keys the map can ever hold.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    fn r(&self) -> &Region {
        self.seg.region()
    }

    fn state(&self, e: usize) -> Result<u32> {
        let w = self
            .r()
            .u32_at(e)
            .ok_or_else(|| self.seg.corrupted("counter entry outside the segment"))?;
        // ORDERING: Acquire — pairs with the Release store of LIVE in
        // `insert`: the key bytes are complete.
        Ok(w.load(Ordering::Acquire))
    }

    fn value(&self, e: usize) -> Result<&AtomicU64> {
        word(self.r(), e + 8).map_err(|err| self.seg.named(err))
    }

    /// The key stored in entry `e` (its length checked before use).
    fn read_key(&self, e: usize) -> Result<([u8; MAX_KEY], usize)> {
        let bad = || self.seg.corrupted("entry out of bounds");
        let mut b = [0u8; 4];
        self.r().read(e + 4, &mut b).ok_or_else(bad)?;
        let len = u32::from_ne_bytes(b) as usize;
        if len > MAX_KEY {
            return Err(self
                .seg
                .corrupted(format!("entry at {e} has a key of {len} bytes")));
        }
        let mut k = [0u8; MAX_KEY];
        self.r().read(e + 16, &mut k[..len]).ok_or_else(bad)?;
        Ok((k, len))
    }

    fn key_matches(&self, e: usize, key: &[u8]) -> Result<bool> {
        let (k, len) = self.read_key(e)?;
        Ok(&k[..len] == key)
    }

    fn check_key<'k>(&self, key: &'k str) -> Result<&'k [u8]> {
        if key.len() > MAX_KEY {
            return Err(Error::InvalidArgument(format!(
                "key of {} bytes; keys are at most {MAX_KEY}",
                key.len()
            )));
        }
        Ok(key.as_bytes())
    }

    /// Find `key`: at most `capacity` entries are looked at.
    fn probe(&self, key: &[u8]) -> Result<Probe> {
        let mask = self.cap - 1;
        let start = fnv(key) & mask;
        for i in 0..self.cap {
            let e = self.entries + (((start + i) & mask) as usize) * ENTRY;
            match self.state(e)? {
                EMPTY => return Ok(Probe::Absent(Some(e))),
                LIVE => {
                    if self.key_matches(e, key)? {
                        return Ok(Probe::Found(e));
                    }
                }
                REMOVED => {}
                other => {
                    return Err(self
                        .seg
                        .corrupted(format!("entry at {e} has state {other}")))
                }
            }
        }
        Ok(Probe::Absent(None))
    }

    /// The entry of `key`, inserting it (value 0) under the lock if absent.
    /// `locked`: the caller holds the lock already.
    fn entry(&self, key: &[u8], locked: bool) -> Result<usize> {
        if let Probe::Found(e) = self.probe(key)? {
            return Ok(e);
        }
        let _g = if locked {
            None
        } else {
            Some(self.lock_raw(None)?)
        };
        // Under the lock: nobody else inserts; look again.
        match self.probe(key)? {
            Probe::Found(e) => Ok(e),
            Probe::Absent(None) => Err(Error::InvalidArgument(format!(
                "counter map {:?} is full ({} keys)",
                self.seg.name(),
                self.cap
            ))),
            Probe::Absent(Some(e)) => {
                let r = self.r();
                let bad = || self.seg.corrupted("entry out of bounds");
                r.write(e + 4, &(key.len() as u32).to_ne_bytes())
                    .ok_or_else(bad)?;
                r.write(e + 16, key).ok_or_else(bad)?;
                // ORDERING: Relaxed — published by the Release store below.
                self.value(e)?.store(0, Ordering::Relaxed);
                let state = r.u32_at(e).ok_or_else(bad)?;
                // ORDERING: Release — publishes the key and value; pairs
                // with the Acquire load in `state`.
                state.store(LIVE, Ordering::Release);
                Ok(e)
            }
        }
    }

    fn lock_raw(&self, timeout: Option<std::time::Duration>) -> Result<LockGuard<'_>> {
        self.lock
            .lock(self.r(), timeout)
            .map_err(|e| self.seg.named(e))?
            .ok_or_else(|| Error::InvalidArgument("timed out waiting for the map's lock".into()))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Result<Option<i64>> {
        match self.probe(self.check_key(key)?)? {
            // ORDERING: Relaxed — a counter's value orders nothing else.
            Probe::Found(e) => Ok(Some(self.value(e)?.load(Ordering::Relaxed) as i64)),
            Probe::Absent(_) => Ok(None),
        }
    }

    /// Add `delta` to `key` (inserting it at 0 first if absent); the new
    /// value. Lock-free for an existing key.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        self.add_in(key, delta, false)
    }

    fn add_in(&self, key: &str, delta: i64, locked: bool) -> Result<i64> {
        let e = self.entry(self.check_key(key)?, locked)?;
        // ORDERING: Relaxed — an atomic read-modify-write is exact
        // whatever the ordering; nothing else is published through it.
        Ok((self.value(e)?.fetch_add(delta as u64, Ordering::Relaxed) as i64).wrapping_add(delta))
    }

    /// Set `key` to `value` (inserting it if absent).
    pub fn set(&self, key: &str, value: i64) -> Result<()> {
        self.set_in(key, value, false)
    }

    fn set_in(&self, key: &str, value: i64, locked: bool) -> Result<()> {
        let e = self.entry(self.check_key(key)?, locked)?;
        // ORDERING: Relaxed — as in `add`.
        self.value(e)?.store(value as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Set `key` to `new` if it is `current` (an absent key counts as 0 and
    /// is inserted): `Ok(previous)` on success, `Err(actual)` otherwise.
    pub fn compare_exchange(
        &self,
        key: &str,
        current: i64,
        new: i64,
    ) -> Result<std::result::Result<i64, i64>> {
        let e = self.entry(self.check_key(key)?, false)?;
        // ORDERING: Relaxed — as in `add`.
        Ok(self
            .value(e)?
            .compare_exchange(
                current as u64,
                new as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .map(|v| v as i64)
            .map_err(|v| v as i64))
    }

    /// Remove `key`; its last value, if it was present. Takes the lock.
    pub fn remove(&self, key: &str) -> Result<Option<i64>> {
        let key = self.check_key(key)?;
        let _g = self.lock_raw(None)?;
        self.remove_locked(key)
    }

    fn remove_locked(&self, key: &[u8]) -> Result<Option<i64>> {
        match self.probe(key)? {
            Probe::Found(e) => {
                let state = self
                    .r()
                    .u32_at(e)
                    .ok_or_else(|| self.seg.corrupted("entry out of bounds"))?;
                // ORDERING: Release — pairs with the Acquire in `state`.
                state.store(REMOVED, Ordering::Release);
                // ORDERING: Relaxed — as in `add`.
                Ok(Some(self.value(e)?.load(Ordering::Relaxed) as i64))
            }
            Probe::Absent(_) => Ok(None),
        }
    }

    /// Every key and value. Each value is read atomically, but not all at
    /// one instant: a key updated during the copy may show a value older or
    /// newer than its neighbours' (good for display; take [`lock`](Self::lock)
    /// for a consistent view between cooperating writers).
    pub fn snapshot(&self) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for i in 0..self.cap as usize {
            let e = self.entries + i * ENTRY;
            if self.state(e)? != LIVE {
                continue;
            }
            let (k, len) = self.read_key(e)?;
            let k = k[..len].to_vec();
            let k = String::from_utf8(k).map_err(|_| {
                self.seg
                    .corrupted(format!("entry at {e}: key is not UTF-8"))
            })?;
            // ORDERING: Relaxed — as in `get`.
            out.push((k, self.value(e)?.load(Ordering::Relaxed) as i64));
        }
        Ok(out)
    }

    /// How many keys are present.
    pub fn len(&self) -> Result<usize> {
        let mut n = 0;
        for i in 0..self.cap as usize {
            n += (self.state(self.entries + i * ENTRY)? == LIVE) as usize;
        }
        Ok(n)
    }

    /// Whether the map has no keys.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A handle on `key`'s counter (inserted if absent) that skips the
    /// lookup: `add` through it is one atomic instruction.
    pub fn counter(&self, key: &str) -> Result<Counter<'_>> {
        let e = self.entry(self.check_key(key)?, false)?;
        Ok(Counter {
            value: self.value(e)?,
        })
    }

    /// Take the map's inter-process lock (the tutorial's `with lock:`),
    /// waiting as long as it takes. If the last holder died holding it, the
    /// guard says so ([`MapGuard::owner_died`]).
    pub fn lock(&self) -> Result<MapGuard<'_>> {
        let guard = self.lock_raw(None)?;
        crate::failpoint::failpoint!("lock.held");
        Ok(MapGuard { map: self, guard })
    }

    /// [`lock`](Self::lock) without waiting: `None` if it is held.
    pub fn try_lock(&self) -> Result<Option<MapGuard<'_>>> {
        Ok(self
            .lock
            .lock(self.r(), Some(std::time::Duration::ZERO))
            .map_err(|e| self.seg.named(e))?
            .map(|guard| MapGuard { map: self, guard }))
    }

    /// [`lock`](Self::lock), waiting at most `timeout`: `None` if it did
    /// not get it.
    pub fn lock_timeout(&self, timeout: std::time::Duration) -> Result<Option<MapGuard<'_>>> {
        Ok(self
            .lock
            .lock(
                self.r(),
                Some(timeout.max(std::time::Duration::from_nanos(1))),
            )
            .map_err(|e| self.seg.named(e))?
            .map(|guard| MapGuard { map: self, guard }))
    }
}

impl CounterMap {
    /// [`lock_timeout`](Self::lock_timeout) (`None`: wait as long as it
    /// takes) for a guard that holds a share of the map instead of a
    /// borrow, for lock objects whose holder is not a scope (language
    /// bindings). `None` if it did not get the lock in time. Like every
    /// guard, it must be dropped on the thread that took it (it is not
    /// `Send`).
    pub fn lock_arc(
        self: &std::sync::Arc<Self>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Option<ArcMapGuard>> {
        let guard = match timeout {
            None => Some(self.lock_raw(None)?),
            Some(t) => self
                .lock
                .lock(self.r(), Some(t))
                .map_err(|e| self.seg.named(e))?,
        };
        Ok(guard.map(|g| {
            // SAFETY: the guard borrows the map's mapping; the `Arc` stored
            // beside it keeps the map (and so the mapping) alive, and the
            // guard is declared first, so it is dropped (unlocked) before
            // that `Arc` is released.
            let guard = unsafe { std::mem::transmute::<LockGuard<'_>, LockGuard<'static>>(g) };
            ArcMapGuard {
                guard,
                _map: self.clone(),
            }
        }))
    }
}

/// The map's lock, held, with a share of the map (see
/// [`CounterMap::lock_arc`]); unlocked on drop.
#[derive(Debug)]
pub struct ArcMapGuard {
    // Dropped first (declaration order): unlock, then release the map.
    guard: LockGuard<'static>,
    _map: std::sync::Arc<CounterMap>,
}

impl ArcMapGuard {
    /// Whether the previous holder died holding the lock.
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died()
    }
}

/// A cached counter: `add` without a lookup.
#[derive(Debug)]
pub struct Counter<'a> {
    value: &'a AtomicU64,
}

impl Counter<'_> {
    /// Add `delta`; the new value.
    pub fn add(&self, delta: i64) -> i64 {
        // ORDERING: Relaxed — as in `CounterMap::add`.
        (self.value.fetch_add(delta as u64, Ordering::Relaxed) as i64).wrapping_add(delta)
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        // ORDERING: Relaxed — as in `CounterMap::get`.
        self.value.load(Ordering::Relaxed) as i64
    }
}

/// The map's lock, held: operations through it do not take the lock again.
#[derive(Debug)]
pub struct MapGuard<'a> {
    map: &'a CounterMap,
    guard: LockGuard<'a>,
}

impl MapGuard<'_> {
    /// Whether the previous holder died holding the lock (its multi-key
    /// update may be half done).
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Result<Option<i64>> {
        self.map.get(key)
    }

    /// Add `delta` to `key`; the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        self.map.add_in(key, delta, true)
    }

    /// Set `key` to `value`.
    pub fn set(&self, key: &str, value: i64) -> Result<()> {
        self.map.set_in(key, value, true)
    }

    /// Remove `key`; its last value, if present.
    pub fn remove(&self, key: &str) -> Result<Option<i64>> {
        self.map.remove_locked(self.map.check_key(key)?)
    }
}
