//! The mpmc handles: [`Sender`], [`Receiver`] and the read guard.

use super::ring::{self, ClaimRec, Layout, Slot, CREATOR_HOLDS, SENDERS_GONE};
use crate::error::{Error, RecvError, Result, SendError};
use crate::failpoint::failpoint;
use crate::header::{Header, Kind, CLOSED_OFF, LOST_OFF};
use crate::options::Options;
use crate::peer::{self, Liveness};
use crate::segment::{Segment, Spec};
use crate::sync::Ordering;
use crate::wait::{Backoff, Next, Until, WaitStrategy};
use std::ops::Deref;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// Peer-table role code of a sender.
const ROLE_SENDER: u32 = 1;
/// Peer-table role code of a receiver.
const ROLE_RECEIVER: u32 = 2;
/// Handles (senders + receivers) a queue can have attached at once.
const PEER_SLOTS: u32 = 64;
fn role_name(role: u32) -> &'static str {
    if role == ROLE_SENDER {
        "sender"
    } else {
        "receiver"
    }
}

/// The mpmc parameters check of `segment::open`.
pub(crate) fn validate(h: &Header) -> std::result::Result<(), (&'static str, String)> {
    let (cap, slot) = (h.param_a, h.param_b);
    if !cap.is_power_of_two() || !(2..=ring::MAX_SLOTS).contains(&cap) {
        return Err((
            "param_a",
            format!("capacity {cap} is not a power of two in 2..=2^24"),
        ));
    }
    if !(1..=ring::MAX_SLOT_SIZE).contains(&slot) {
        return Err(("param_b", format!("slot size {slot} is not in 1..=2^24")));
    }
    if h.peer_slots < 2 {
        return Err((
            "peer_slots",
            format!("{} (an mpmc queue needs 2 or more)", h.peer_slots),
        ));
    }
    let want = h.kind_off() as u64 + Layout::area_size(cap, slot);
    if h.total_size != want {
        return Err((
            "total_size",
            format!(
                "{} bytes, but {cap} slots of {slot} bytes need {want}",
                h.total_size
            ),
        ));
    }
    Ok(())
}

pub(crate) fn layout(seg: &Segment) -> Layout {
    let h = seg.header();
    Layout::in_segment(h.kind_off(), CLOSED_OFF, LOST_OFF, h.param_a, h.param_b)
}

/// The largest queue area (slots and their sequence words), in bytes.
const MAX_AREA: u64 = 1 << 32;

/// Create a queue, its creator attached as `role` in slot 0 before it is
/// READY: a published queue always has a live peer or a dead one, never a
/// moment with none (which `gc` would take for abandoned).
fn create_segment(
    name: Option<&str>,
    capacity: usize,
    max_message: usize,
    role: u32,
    mode: u32,
) -> Result<Segment> {
    let cap = crate::size::pow2_in("capacity (slots)", capacity, 2, ring::MAX_SLOTS)?;
    if max_message == 0 || max_message as u64 > ring::MAX_SLOT_SIZE {
        return Err(Error::InvalidArgument(format!(
            "capacity {capacity} must be in 1..=2^24 slots and max_message {max_message} in 1..=2^24 bytes"
        )));
    }
    let slot = max_message as u64;
    // Both factors are at most 2^24 (no overflow); the product is bounded
    // as a spsc ring's capacity is, so that creating the queue (which
    // writes every slot's sequence word) stays within reach of a machine.
    if Layout::area_size(cap, slot) > MAX_AREA {
        return Err(Error::InvalidArgument(format!(
            "{cap} slots of {max_message} bytes need {} bytes; at most {MAX_AREA}",
            Layout::area_size(cap, slot)
        )));
    }
    let spec = Spec {
        kind: Kind::Mpmc,
        param_a: cap,
        param_b: slot,
        peer_slots: PEER_SLOTS,
        kind_size: Layout::area_size(cap, slot) as usize,
    };
    let lay = Layout::in_segment(
        crate::header::kind_off(PEER_SLOTS),
        CLOSED_OFF,
        LOST_OFF,
        cap,
        slot,
    );
    Segment::create_with(name, spec, mode, &|seg| {
        ring::init(seg.region(), &lay)?;
        if let Some(w) = seg.region().u32_at(lay.closed) {
            // ORDERING: Relaxed — published by the READY store.
            // (A creating receiver sets RECEIVER_SEEN in `End::attach`.)
            w.fetch_or(CREATOR_HOLDS, Ordering::Relaxed);
        }
        match peer::attach(seg, CREATOR_SLOT, role)? {
            peer::Attach::Attached => Ok(()),
            other => Err(seg.corrupted(format!("a new queue's slot 0 is {other:?}"))),
        }
    })
}

/// Open the named queue (not attached yet) if it has `cap` slots of
/// `slot` bytes.
fn open_matching(name: &str, cap: u64, slot: u64) -> Result<Segment> {
    Segment::open_matching(name, Kind::Mpmc, validate, (cap, slot), |c, s| {
        format!("{c} slots of {s} bytes")
    })
}

/// An mpmc end for [`Options`]: the kind's hooks (see `options.rs`), and
/// the queries both ends answer alike.
macro_rules! mpmc_end {
    ($t:ident, $role:expr) => {
        // The seal's hooks take crate-private types: nobody outside can
        // name them (see `options::sealed`).
        #[allow(private_interfaces)]
        impl crate::options::Sealed for $t {
            const KIND: Kind = Kind::Mpmc;
            const VALIDATE: crate::segment::Validator = validate;
            fn create_segment(name: Option<&str>, o: &Options) -> Result<Segment> {
                let (slots, size) = o.queue_slots()?;
                create_segment(name, slots, size, $role, o.mode_bits())
            }
            fn open_matching(name: &str, o: &Options) -> Result<Segment> {
                let (slots, size) = o.queue_slots()?;
                let cap = crate::size::pow2_in("capacity (slots)", slots, 2, ring::MAX_SLOTS)?;
                open_matching(name, cap, size as u64)
            }
            fn from_segment(seg: Segment, created: bool, o: &Options) -> Result<$t> {
                let mut h = $t::attach(seg, created)?;
                h.end.strategy = o.strategy();
                Ok(h)
            }
        }
        impl crate::options::Handle for $t {}

        impl $t {
            /// The segment's file descriptor (close-on-exec).
            pub fn segment_fd(&self) -> BorrowedFd<'_> {
                self.end.seg.fd()
            }

            /// Slots in the queue.
            pub fn capacity(&self) -> usize {
                self.end.lay.cap as usize
            }

            /// Messages in the queue now (claimed by senders, not yet taken
            /// by receivers; a snapshot).
            pub fn len(&self) -> usize {
                self.end.len()
            }

            /// Whether the queue holds no message (a snapshot).
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Whether every slot is taken (a snapshot).
            pub fn is_full(&self) -> bool {
                self.len() >= self.capacity()
            }

            /// The largest message, in bytes.
            pub fn max_message_len(&self) -> usize {
                self.end.lay.slot_size as usize
            }

            /// Choose how this end waits (default: adaptive).
            pub fn set_wait_strategy(&mut self, s: WaitStrategy) {
                self.end.strategy = s;
            }
        }
    };
}
mpmc_end!(Sender, ROLE_SENDER);
mpmc_end!(Receiver, ROLE_RECEIVER);

/// The peer slot a creator takes (before READY).
const CREATOR_SLOT: u32 = 0;

/// One attached end, sender or receiver: the segment, its peer slot and the
/// queue's layout.
#[derive(Debug)]
struct End {
    seg: Segment,
    lay: Layout,
    slot: u32,
    role: u32,
    /// Whether this is the creator's handle (it holds the queue open).
    creator: bool,
    strategy: WaitStrategy,
    /// When a non-blocking call may check the peers again.
    peer_check_at: std::cell::Cell<Option<std::time::Instant>>,
    /// Whether our entry's `parked` word is set (this process's mirror, so
    /// the claim path clears it only when it was set).
    parked: std::cell::Cell<bool>,
    /// What the last peer check found unexplained (position, its `seq`,
    /// `enq`, `deq`): the same found again at the next check is an error.
    suspect: std::cell::Cell<Option<(u64, u64, u64, u64)>>,
}

/// The mpmc keep rule: a queue that still holds messages outlives its last
/// holder, for receivers that come later (they may join at any time).
fn keep(seg: &Segment) -> bool {
    ring::positions(seg.region(), &layout(seg)).is_ok_and(|(enq, deq)| enq != deq)
}

impl End {
    fn attach(mut seg: Segment, role: u32, creator: bool) -> Result<End> {
        crate::wait::register_process();
        let slot = if creator {
            // Attached by `create_segment`, before READY.
            CREATOR_SLOT
        } else {
            match peer::attach_any(&seg, role)? {
                Some(slot) => slot,
                None => {
                    return Err(Error::TooManyPeers {
                        segment: seg.name().to_owned(),
                        slots: seg.header().peer_slots,
                    })
                }
            }
        };
        seg.set_keep(keep);
        let end = End {
            lay: layout(&seg),
            seg,
            slot,
            role,
            creator,
            strategy: WaitStrategy::default(),
            peer_check_at: std::cell::Cell::new(None),
            parked: std::cell::Cell::new(false),
            suspect: std::cell::Cell::new(None),
        };
        // Our entry is ACTIVE (Release); the bump makes the join part of
        // the membership chain: a closer that looked before it fails its
        // CAS and looks again (and sees us), or it ended the stream first
        // and we are refused. See `ring::end_if_unheld`.
        let before = ring::bump(end.seg.region(), &end.lay).map_err(|e| end.seg.named(e))?;
        if role == ROLE_RECEIVER {
            ring::receiver_seen(end.seg.region(), &end.lay).map_err(|e| end.seg.named(e))?;
        }
        if role == ROLE_SENDER && before & SENDERS_GONE != 0 {
            peer::detach(&end.seg, end.slot);
            return Err(Error::Closed {
                segment: end.seg.name().to_owned(),
                role: role_name(role),
            });
        }
        Ok(end)
    }

    /// End the stream if nothing keeps it open any more (after a
    /// membership change: a sender left or died, the creator let go).
    /// `attached`: whether this handle still counts (it has not detached).
    fn end_if_unheld(&self, attached: bool) -> Result<bool> {
        let me = attached && self.role == ROLE_SENDER;
        ring::end_if_unheld(self.seg.region(), &self.lay, &mut || {
            Ok(me || self.others_attached(ROLE_SENDER)?)
        })
        .map_err(|e| self.seg.named(e))
    }

    /// A sender's peer check while it waits for room: [`check_wait`]
    /// (Self::check_wait), then give up with `Disconnected` if no receiver
    /// is attached and either receivers came and all went or the creator
    /// let go. (While the creator holds the queue and no receiver has come
    /// yet, the sender waits for the first, as `Queue.put` would; its
    /// `_timeout` form ends at the deadline.)
    fn check_sender_wait(&self) -> Result<(), SendError<()>> {
        let failed = |e| SendError::Failed((), e);
        self.check_wait().map_err(failed)?;
        let bits = ring::closed_bits(self.seg.region(), &self.lay);
        if (bits & ring::RECEIVER_SEEN != 0 || bits & CREATOR_HOLDS == 0)
            && !self.others_attached(ROLE_RECEIVER).map_err(failed)?
        {
            return Err(SendError::Disconnected(()));
        }
        Ok(())
    }

    /// Let go of the creator's hold: from now on the stream ends when
    /// every sender has gone.
    fn let_go(&self) -> Result<()> {
        ring::let_go(self.seg.region(), &self.lay).map_err(|e| self.seg.named(e))?;
        self.end_if_unheld(true).map(|_| ())
    }

    /// Our claim record, for a claim about to be made: from here on we may
    /// hold a slot, so the entry is no longer parked.
    #[inline]
    fn claim(&self) -> ClaimRec<'_> {
        if self.parked.get() {
            self.set_parked(false);
        }
        let (pos, len) =
            peer::claim_words(&self.seg, self.slot).expect("own slot validated at attach");
        ClaimRec { pos, len }
    }

    /// Say (in our entry) that we hold no slot until our next claim: we
    /// wait, or return empty-handed to a poller. Our record of the last
    /// claim then explains no other end's wait ([`live_claimer`]).
    ///
    /// [`live_claimer`]: Self::live_claimer
    fn park(&self) {
        if !self.parked.get() {
            self.set_parked(true);
        }
    }

    #[cold]
    fn set_parked(&self, on: bool) {
        if let Ok(w) = peer::parked_word(&self.seg, self.slot) {
            // ORDERING: Release — set: after our last slot was published
            // or freed, so a checker that acquires `parked` and then reads
            // that slot's `seq` sees it finished. Cleared: before the claim
            // record's stores and the Release CAS that publishes the claim,
            // so whoever acquires the moved position sees the record and
            // the cleared word together.
            w.store(on as u32, Ordering::Release);
        }
        self.parked.set(on);
    }

    /// Whether any handle of `role` other than this one is attached (alive
    /// or not yet reaped).
    fn others_attached(&self, role: u32) -> Result<bool> {
        for s in 0..self.seg.header().peer_slots {
            if s != self.slot
                && peer::state(&self.seg, s)? == peer::ACTIVE
                && peer::role(&self.seg, s) == role
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether a live handle of `role` other than `except` has `pos` in its
    /// recorded claim and is not parked (a parked handle holds no slot: its
    /// record is of a claim it has finished). A live claimer's record is
    /// stable while it holds a position (it records before claiming and
    /// changes it only for its next claim, after clearing `parked`), so this
    /// never misses one.
    fn live_claimer(&self, role: u32, pos: u64, except: u32) -> Result<bool> {
        for s in 0..self.seg.header().peer_slots {
            if s == except || s == self.slot {
                continue;
            }
            if peer::state(&self.seg, s)? != peer::ACTIVE || peer::role(&self.seg, s) != role {
                continue;
            }
            let (c, n) = peer::claim_words(&self.seg, s)?;
            // ORDERING: Acquire — pairs with the Release claim CASes.
            let (c, n) = (c.load(Ordering::Acquire), n.load(Ordering::Acquire));
            if c != 0
                && (c - 1..(c - 1).saturating_add(n)).contains(&pos)
                // ORDERING: Acquire — pairs with the Release in `set_parked`.
                && peer::parked_word(&self.seg, s)?.load(Ordering::Acquire) == 0
                && peer::liveness(&self.seg, s)? == Liveness::Alive
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reap every dead peer: settle its claim (skip or free the slot it
    /// held), and close the queue's side if it was the last of its role.
    fn check_peers(&self) -> Result<()> {
        let r = self.seg.region();
        let mut reaped = [false; 3];
        for s in 0..self.seg.header().peer_slots {
            if s == self.slot || peer::state(&self.seg, s)? != peer::ACTIVE {
                continue;
            }
            let role = peer::role(&self.seg, s);
            // Whether every position of the dead peer's record is settled:
            // recovered, or moved past what a dead holder leaves. A
            // position also in a live claimer's record is left alone, but
            // while its slot still looks held the dead peer is not reaped:
            // that record may be only an instant's (recorded, its CAS lost
            // to the dead one, about to record again), and the next check
            // looks again instead of forgetting the slot.
            let mut recover = |s: u32| -> Result<bool> {
                if s == CREATOR_SLOT {
                    // Slot 0 is the creator's until it let go (which
                    // clears the bit first): its death lets go too.
                    ring::let_go(r, &self.lay).map_err(|e| self.seg.named(e))?;
                }
                let (c, n) = peer::claim_words(&self.seg, s)?;
                // ORDERING: Acquire — pairs with the dead peer's Release
                // claim CAS.
                let (c, n) = (c.load(Ordering::Acquire), n.load(Ordering::Acquire));
                if c == 0 {
                    return Ok(true);
                }
                let mut settled = true;
                // A record can only cover a capacity's worth of positions.
                for pos in (0..n.min(self.lay.cap)).map(|i| (c - 1).wrapping_add(i)) {
                    if self.live_claimer(role, pos, s)? {
                        let seq = ring::seq(r, &self.lay, pos)? & !ring::SKIPPED;
                        let held = if role == ROLE_SENDER {
                            seq == pos
                        } else {
                            seq == pos.wrapping_add(1)
                        };
                        settled &= !held;
                        continue;
                    }
                    if role == ROLE_SENDER {
                        ring::skip_unpublished(r, &self.lay, pos).map_err(|e| self.seg.named(e))?;
                    } else {
                        ring::free_unreleased(r, &self.lay, pos).map_err(|e| self.seg.named(e))?;
                    }
                }
                Ok(settled)
            };
            if peer::reap(&self.seg, s, &mut recover)? {
                if let Some(w) = r.u32_at(crate::header::REAPED_OFF) {
                    // ORDERING: Relaxed — a statistic.
                    w.fetch_add(1, Ordering::Relaxed);
                }
                reaped[(role as usize).min(2)] = true;
            }
        }
        if reaped.iter().any(|&x| x) {
            // The reaped entries are DEAD (Release): a membership change.
            ring::bump(r, &self.lay).map_err(|e| self.seg.named(e))?;
            self.end_if_unheld(true)?;
        }
        Ok(())
    }

    /// After a peer check, while this end waits: a wait that no live peer
    /// explains is corruption (or a claimer nobody can see), never a reason
    /// to wait forever. The queue is empty (`enq == deq`) or full (`enq -
    /// deq == cap`), and a receiver waits for nothing or a sender for the
    /// receivers: fine. Otherwise the slot waited on was claimed by the other
    /// role (the positions say so) and is unfinished: some live peer's
    /// recorded claim must cover it, or it must change while we look.
    fn check_stuck(&self) -> Result<()> {
        let r = self.seg.region();
        let lay = &self.lay;
        // What the last check found unexplained; cleared unless found again.
        let prev = self.suspect.take();
        let (enq, deq) = ring::positions(r, lay)?;
        if deq > enq || enq - deq > lay.cap {
            return Err(self.seg.named(crate::error::corrupt(format!(
                "enqueue position {enq} and dequeue position {deq} are more than the capacity {} apart",
                lay.cap
            ))));
        }
        let (pos, other) = if self.role == ROLE_RECEIVER {
            if enq == deq {
                return Ok(());
            }
            (deq, ROLE_SENDER)
        } else {
            if enq - deq == lay.cap {
                return Ok(());
            }
            (enq.wrapping_sub(lay.cap), ROLE_RECEIVER)
        };
        let before = ring::seq(r, lay, pos)?;
        if self.live_claimer(other, pos, u32::MAX)? {
            return Ok(());
        }
        let after = ring::seq(r, lay, pos)?;
        // Anything that moved while we looked is progress: the positions
        // and the sequence are read at different instants, so a slot a
        // sender has just claimed and published can read "ahead" of an
        // enqueue position read a moment before.
        if after != before || ring::positions(r, lay)? != (enq, deq) {
            return Ok(());
        }
        // Not stuck after all if the slot is ready for us now.
        let ready = if self.role == ROLE_RECEIVER {
            after & !ring::SKIPPED == pos.wrapping_add(1)
        } else {
            after & !ring::SKIPPED == enq
        };
        if ready {
            return Ok(());
        }
        // Unexplained twice in a row, a peer check apart, with nothing
        // moved in between: not a race of our reads, corruption.
        let seen = (pos, after, enq, deq);
        self.suspect.set(Some(seen));
        if prev != Some(seen) {
            return Ok(());
        }
        Err(self.seg.named(crate::error::corrupt(format!(
            "slot of position {pos} has sequence {after:#x} (enqueue position {enq}, dequeue position {deq}) and no live peer holds it"
        ))))
    }

    /// Check the peers (reaping the dead), then whether the wait is still
    /// explained ([`check_stuck`](Self::check_stuck)).
    fn check_wait(&self) -> Result<()> {
        self.check_peers()?;
        self.check_stuck()
    }

    /// Detach (reaping dead peers first, so a queue left behind for late
    /// receivers is not taken for stale); end the stream if this was the
    /// last thing keeping it open.
    /// Messages in the queue: slots claimed by senders and not yet taken
    /// by receivers (some may still be being written). A snapshot, at most
    /// the capacity; 0 if the positions cannot be read.
    fn len(&self) -> usize {
        ring::positions(self.seg.region(), &self.lay).map_or(0, |(enq, deq)| {
            enq.wrapping_sub(deq).min(self.lay.cap) as usize
        })
    }

    fn detach_end(&self) {
        if self.seg.forked_copy() {
            return; // a forked child's copy of the parent's handle
        }
        let _ = self.check_peers();
        if self.creator {
            let _ = ring::let_go(self.seg.region(), &self.lay);
        }
        peer::detach(&self.seg, self.slot);
        // Our entry is CLOSED (Release); see `attach`.
        if ring::bump(self.seg.region(), &self.lay).is_ok() {
            let _ = self.end_if_unheld(false);
        }
    }
}

/// The sending end of an mpmc queue. Open as many as you like, in as many
/// processes. `Send`, not `Sync`, not `Clone` (see [`try_clone`](Self::try_clone)).
#[derive(Debug)]
pub struct Sender {
    end: End,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

/// The receiving end of an mpmc queue. Open as many as you like.
#[derive(Debug)]
pub struct Receiver {
    end: End,
    /// A claimed slot whose message has not been handed out yet (after
    /// `BufferTooShort`): the next receive returns it.
    held: Option<u64>,
    _not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl Sender {
    /// Create the named queue with `capacity` slots (rounded up to a power of
    /// two) of `max_message` bytes each, and attach as a sender. This handle
    /// holds the queue open (see [`close`](Self::close)); the name goes
    /// with the last holder, unless messages are left for later receivers.
    pub fn create(name: &str, capacity: usize, max_message: usize) -> Result<Sender> {
        Options::new().room_for(capacity, max_message).create(name)
    }

    /// Create an anonymous queue (a memfd); share it by fd.
    pub fn create_anonymous(capacity: usize, max_message: usize) -> Result<Sender> {
        Options::new()
            .room_for(capacity, max_message)
            .create_anonymous()
    }

    /// Open the named queue as a sender, now: `NotFound` if there is
    /// no such queue yet (see [`open_wait`](Self::open_wait)).
    pub fn open(name: &str) -> Result<Sender> {
        Options::new().open(name)
    }

    /// Open the named queue as a sender, waiting as long as it takes
    /// for it to be created (a stale queue of that name is waited past).
    pub fn open_wait(name: &str) -> Result<Sender> {
        Options::new().open_wait().open(name)
    }

    /// [`open_wait`](Self::open_wait), giving up after `timeout` with the
    /// last reason (`NotFound`, `NotReady` or `Stale`).
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Sender> {
        Options::new().open_timeout(timeout).open(name)
    }

    /// Open the named queue as a sender if it exists, or create it
    /// (this handle is then the creator, holding it open; see
    /// [`close`](Self::close)). An existing queue must have the same
    /// slots and slot size, or `Mismatch`.
    ///
    /// ```
    /// use ringway::mpmc::{Receiver, Sender};
    /// # let name = format!("doc-mpmc-ooc-{}", std::process::id());
    /// // Whoever comes first creates the queue; the other opens it.
    /// let mut chef = Sender::open_or_create(&name, 16, 64)?;
    /// let mut foodie = Receiver::open_or_create(&name, 16, 64)?;
    /// chef.send(b"bun")?;
    /// assert_eq!(foodie.recv_vec()?, b"bun");
    /// // Other parameters than the queue's: refused, nothing attached.
    /// let e = Receiver::open_or_create(&name, 16, 128).unwrap_err();
    /// assert!(matches!(e, ringway::Error::Mismatch { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(name: &str, capacity: usize, max_message: usize) -> Result<Sender> {
        Options::new()
            .room_for(capacity, max_message)
            .open_or_create(name)
    }

    /// Let the children `cmd` spawns open this queue with
    /// `Sender::from_inherited(key)` or `Receiver::from_inherited(key)`.
    pub fn pass_to(&self, cmd: &mut std::process::Command, key: &str) -> Result<()> {
        crate::inherit::pass(self.segment_fd(), cmd, key)
    }

    /// Open the queue a parent passed with `pass_to(.., key)` as a
    /// sender.
    pub fn from_inherited(key: &str) -> Result<Sender> {
        Sender::from_fd(std::os::fd::AsFd::as_fd(&crate::inherit::take(key)?))
    }

    /// Open the queue behind `fd` as a sender.
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<Sender> {
        Options::new().from_fd(fd)
    }

    /// Another sender on the same queue (its own peer slot).
    pub fn try_clone(&self) -> Result<Sender> {
        Sender::from_fd(self.segment_fd())
    }

    fn attach(seg: Segment, creator: bool) -> Result<Sender> {
        Ok(Sender {
            end: End::attach(seg, ROLE_SENDER, creator)?,
            _not_sync: std::marker::PhantomData,
        })
    }

    /// Messages lost in flight in dead processes so far.
    pub fn lost(&self) -> u64 {
        ring::lost(self.end.seg.region(), &self.end.lay)
    }

    /// Let the stream end: stop holding the queue open for senders that
    /// have not joined yet. Once every sender attached now has gone,
    /// receivers drain the queue and get `Disconnected`, and later senders
    /// are refused. The creator's handle holds the queue open until it
    /// calls this or drops (or dies); for the other handles it changes
    /// nothing. This handle can still send.
    pub fn close(&self) -> Result<()> {
        self.end.let_go()
    }

    /// Send without waiting (`Full` if no slot is free now).
    #[inline]
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError<()>> {
        self.send_until(msg, Until::Now)
    }

    /// Send, waiting as long as it takes for a free slot.
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError<()>> {
        self.send_until(msg, Until::Forever)
    }

    /// Send, waiting at most `timeout`.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError<()>> {
        self.send_until(msg, Until::after(timeout))
    }

    /// Send a serde value (encoded with postcard straight into the slot),
    /// waiting for a free slot.
    pub fn send_value<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), SendError<()>> {
        self.send_value_until(v, Until::Forever)
    }

    /// [`send_value`](Self::send_value) without waiting.
    pub fn try_send_value<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
    ) -> Result<(), SendError<()>> {
        self.send_value_until(v, Until::Now)
    }

    /// [`send_value`](Self::send_value), waiting at most `timeout`.
    pub fn send_value_timeout<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
        timeout: Duration,
    ) -> Result<(), SendError<()>> {
        self.send_value_until(v, Until::after(timeout))
    }

    fn send_value_until<T: serde::Serialize + ?Sized>(
        &mut self,
        v: &T,
        until: Until,
    ) -> Result<(), SendError<()>> {
        let len = crate::codec::encoded_len(v).map_err(|e| SendError::Failed((), e))?;
        let pos = self.claim_until(len, until)?;
        let mut g = SendGrant {
            sender: self,
            pos,
            len,
            done: false,
        };
        // On an encoding error the grant drops uncommitted: the slot is
        // abandoned (skipped), never left stuck.
        crate::codec::encode_into(v, &mut g).map_err(|e| SendError::Failed((), e))?;
        g.commit().map_err(|e| SendError::Failed((), e))
    }

    /// Send a plain-old-data value as its bytes, waiting for a free slot.
    pub fn send_pod<T: bytemuck::Pod>(&mut self, v: &T) -> Result<(), SendError<()>> {
        self.send(bytemuck::bytes_of(v))
    }

    /// [`send_pod`](Self::send_pod) without waiting.
    pub fn try_send_pod<T: bytemuck::Pod>(&mut self, v: &T) -> Result<(), SendError<()>> {
        self.try_send(bytemuck::bytes_of(v))
    }

    /// [`send_pod`](Self::send_pod), waiting at most `timeout`.
    pub fn send_pod_timeout<T: bytemuck::Pod>(
        &mut self,
        v: &T,
        timeout: Duration,
    ) -> Result<(), SendError<()>> {
        self.send_timeout(bytemuck::bytes_of(v), timeout)
    }

    /// Claim a slot to write a message of up to `len` bytes in place
    /// (zero-copy), waiting for one. [`SendGrant::commit_len`] publishes it;
    /// dropping the grant abandons it (receivers skip the slot).
    pub fn claim(&mut self, len: usize) -> Result<SendGrant<'_>, SendError<()>> {
        let pos = self.claim_until(len, Until::Forever)?;
        Ok(SendGrant {
            sender: self,
            pos,
            len,
            done: false,
        })
    }

    /// [`claim`](Self::claim) without waiting (`Full` if no slot is free).
    pub fn try_claim(&mut self, len: usize) -> Result<SendGrant<'_>, SendError<()>> {
        let pos = self.claim_until(len, Until::Now)?;
        Ok(SendGrant {
            sender: self,
            pos,
            len,
            done: false,
        })
    }

    /// [`claim`](Self::claim), waiting at most `timeout` for a free slot.
    pub fn claim_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<SendGrant<'_>, SendError<()>> {
        let pos = self.claim_until(len, Until::after(timeout))?;
        Ok(SendGrant {
            sender: self,
            pos,
            len,
            done: false,
        })
    }

    /// Send as many of `msgs` as there are free slots for, in order, with
    /// one claim (one CAS) and one wake-up; waits for the first slot.
    /// Returns how many were sent (at least 1, unless `msgs` is empty).
    pub fn send_batch(&mut self, msgs: &[&[u8]]) -> Result<usize, SendError<()>> {
        self.send_batch_until(msgs, Until::Forever)
    }

    /// [`send_batch`](Self::send_batch) without waiting (`Full` if no slot
    /// is free now).
    pub fn try_send_batch(&mut self, msgs: &[&[u8]]) -> Result<usize, SendError<()>> {
        self.send_batch_until(msgs, Until::Now)
    }

    /// [`send_batch`](Self::send_batch), waiting at most `timeout` for the
    /// first free slot.
    pub fn send_batch_timeout(
        &mut self,
        msgs: &[&[u8]],
        timeout: Duration,
    ) -> Result<usize, SendError<()>> {
        self.send_batch_until(msgs, Until::after(timeout))
    }

    fn send_batch_until(&mut self, msgs: &[&[u8]], until: Until) -> Result<usize, SendError<()>> {
        let Some(longest) = msgs.iter().map(|m| m.len()).max() else {
            return Ok(0);
        };
        let (pos, k) = self.claim_slow(longest, msgs.len() as u64, until)?;
        let (r, lay) = (self.end.seg.region(), &self.end.lay);
        let failed = |e: Error| SendError::Failed((), self.end.seg.named(e));
        for (p, m) in (0..k).map(|i| pos.wrapping_add(i)).zip(msgs) {
            r.write(lay.payload(p), m).expect("slot checked at open");
            failpoint!("mpmc.batch_after_claim");
            ring::publish_quietly(r, lay, p, m.len() as u32).map_err(failed)?;
        }
        let _ = crate::wait::wake(r, lay.data_wait);
        Ok(k as usize)
    }

    #[inline]
    fn send_until(&mut self, msg: &[u8], until: Until) -> Result<(), SendError<()>> {
        let pos = self.claim_until(msg.len(), until)?;
        let (r, lay) = (self.end.seg.region(), &self.end.lay);
        r.write(lay.payload(pos), msg)
            .expect("slot checked at open");
        failpoint!("mpmc.after_claim");
        ring::publish(r, lay, pos, msg.len() as u32)
            .map_err(|e| SendError::Failed((), self.end.seg.named(e)))
    }

    #[inline]
    fn claim_until(&mut self, len: usize, until: Until) -> Result<u64, SendError<()>> {
        let (r, lay) = (self.end.seg.region(), &self.end.lay);
        if len as u64 <= lay.slot_size && ring::closed_bits(r, lay) & SENDERS_GONE == 0 {
            if let Ok(Some((pos, _))) = ring::claim_send(r, lay, self.end.claim(), 1) {
                return Ok(pos);
            }
        }
        self.claim_slow(len, 1, until).map(|(pos, _)| pos)
    }

    /// Claim up to `want` slots for messages of up to `len` bytes.
    #[inline(never)]
    fn claim_slow(
        &mut self,
        len: usize,
        want: u64,
        until: Until,
    ) -> Result<(u64, u64), SendError<()>> {
        let end = &self.end;
        let (r, lay) = (end.seg.region(), &end.lay);
        if len as u64 > lay.slot_size {
            return Err(SendError::TooLarge {
                msg: (),
                max: lay.slot_size as usize,
            });
        }
        let failed = |e: Error| SendError::Failed((), end.seg.named(e));
        let mut backoff: Option<Backoff> = None;
        loop {
            if ring::closed_bits(r, lay) & SENDERS_GONE != 0 {
                return Err(SendError::Disconnected(()));
            }
            if let Some(claimed) = ring::claim_send(r, lay, end.claim(), want).map_err(failed)? {
                return Ok(claimed);
            }
            // Full: we hold no slot until the next claim.
            end.park();
            if matches!(until, Until::Now) {
                // A poller must notice dead receivers (and recover the
                // slots they held) too.
                if crate::wait::peer_check_due(&end.peer_check_at) {
                    self.end.check_sender_wait()?;
                    continue;
                }
                return Err(SendError::Full(()));
            }
            let b = backoff.get_or_insert_with(|| Backoff::new(end.strategy));
            let (enq, _) = ring::positions(r, lay).map_err(failed)?;
            let (enq_w, seq_w) = (r.u64_at(lay.enq), r.u64_at(lay.slot(enq)));
            let mut ready = || {
                // ORDERING: Relaxed — a wake-up hint; the claim re-checks.
                enq_w.is_none_or(|w| w.load(Ordering::Relaxed) != enq)
                    || seq_w.is_none_or(|w| w.load(Ordering::Relaxed) & !ring::SKIPPED == enq)
                    || ring::closed_bits(r, lay) & SENDERS_GONE != 0
            };
            match b.snooze(r, lay.space_wait, until.deadline(), &mut ready) {
                Next::Retry => {}
                Next::TimedOut => return Err(SendError::Timeout(())),
                Next::CheckPeers => end.check_sender_wait()?,
            }
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.end.detach_end();
    }
}

impl Receiver {
    /// Create the named queue with `capacity` slots (rounded up to a power of
    /// two) of `max_message` bytes each, and attach as a receiver. This handle
    /// holds the queue open until [`close`](Self::close) or drop; the name
    /// goes with the last holder, unless messages are left.
    pub fn create(name: &str, capacity: usize, max_message: usize) -> Result<Receiver> {
        Options::new().room_for(capacity, max_message).create(name)
    }

    /// Create an anonymous queue (a memfd) and attach as a receiver; share
    /// it by fd ([`pass_to`](Self::pass_to)).
    pub fn create_anonymous(capacity: usize, max_message: usize) -> Result<Receiver> {
        Options::new()
            .room_for(capacity, max_message)
            .create_anonymous()
    }

    /// Open the named queue as a receiver, now: `NotFound` if there is
    /// no such queue yet (see [`open_wait`](Self::open_wait)).
    pub fn open(name: &str) -> Result<Receiver> {
        Options::new().open(name)
    }

    /// Open the named queue as a receiver, waiting as long as it takes
    /// for it to be created (a stale queue of that name is waited past).
    pub fn open_wait(name: &str) -> Result<Receiver> {
        Options::new().open_wait().open(name)
    }

    /// [`open_wait`](Self::open_wait), giving up after `timeout` with the
    /// last reason (`NotFound`, `NotReady` or `Stale`).
    pub fn open_timeout(name: &str, timeout: Duration) -> Result<Receiver> {
        Options::new().open_timeout(timeout).open(name)
    }

    /// Open the named queue as a receiver if it exists, or create it
    /// (this handle is then the creator, holding it open; see
    /// [`close`](Self::close)). An existing queue must have the same
    /// slots and slot size, or `Mismatch`.
    pub fn open_or_create(name: &str, capacity: usize, max_message: usize) -> Result<Receiver> {
        Options::new()
            .room_for(capacity, max_message)
            .open_or_create(name)
    }

    /// Let the children `cmd` spawns open this queue with
    /// `Sender::from_inherited(key)` or `Receiver::from_inherited(key)`.
    pub fn pass_to(&self, cmd: &mut std::process::Command, key: &str) -> Result<()> {
        crate::inherit::pass(self.segment_fd(), cmd, key)
    }

    /// Open the queue a parent passed with `pass_to(.., key)` as a
    /// receiver.
    pub fn from_inherited(key: &str) -> Result<Receiver> {
        Receiver::from_fd(std::os::fd::AsFd::as_fd(&crate::inherit::take(key)?))
    }

    /// Open the queue behind `fd` as a receiver.
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<Receiver> {
        Options::new().from_fd(fd)
    }

    /// Another receiver on the same queue (its own peer slot).
    pub fn try_clone(&self) -> Result<Receiver> {
        Receiver::from_fd(self.segment_fd())
    }

    fn attach(seg: Segment, creator: bool) -> Result<Receiver> {
        Ok(Receiver {
            end: End::attach(seg, ROLE_RECEIVER, creator)?,
            held: None,
            _not_sync: std::marker::PhantomData,
        })
    }

    /// Let the stream end (see [`Sender::close`]): a creator that
    /// receives calls this once it wants no more senders to join; its
    /// iterator ends when the senders attached now have gone.
    pub fn close(&self) -> Result<()> {
        self.end.let_go()
    }

    /// Messages lost in flight in dead processes so far (each dead sender
    /// or receiver loses at most the one message it held).
    pub fn lost(&self) -> u64 {
        ring::lost(self.end.seg.region(), &self.end.lay)
    }

    /// The next message's position and `(offset, len)`, claimed, waiting per
    /// `until`. Skipped slots are freed on the way.
    #[inline]
    fn next_until(&mut self, until: Until) -> Result<(u64, usize, usize), RecvError> {
        loop {
            let pos = match self.held {
                Some(p) => p,
                None => {
                    let p = self.claim_until(until)?;
                    self.held = Some(p);
                    p
                }
            };
            let (r, lay) = (self.end.seg.region(), &self.end.lay);
            match ring::slot_message(r, lay, pos).map_err(|e| self.end.seg.named(e))? {
                Slot::Message(off, len) => {
                    failpoint!("mpmc.consumer_after_claim");
                    return Ok((pos, off, len));
                }
                Slot::Skipped => {
                    self.held = None;
                    ring::free(r, lay, pos).map_err(|e| self.end.seg.named(e))?;
                }
            }
        }
    }

    #[inline]
    fn claim_until(&mut self, until: Until) -> Result<u64, RecvError> {
        let (r, lay) = (self.end.seg.region(), &self.end.lay);
        if let Ok(Some((pos, _))) = ring::claim_recv(r, lay, self.end.claim(), 1) {
            return Ok(pos);
        }
        self.claim_slow(1, until).map(|(pos, _)| pos)
    }

    /// Claim up to `want` ready slots.
    #[inline(never)]
    fn claim_slow(&mut self, want: u64, until: Until) -> Result<(u64, u64), RecvError> {
        let end = &self.end;
        let (r, lay) = (end.seg.region(), &end.lay);
        let failed = |e: Error| RecvError::Failed(end.seg.named(e));
        let mut backoff: Option<Backoff> = None;
        loop {
            if let Some(claimed) = ring::claim_recv(r, lay, end.claim(), want).map_err(failed)? {
                return Ok(claimed);
            }
            // Empty: we hold no slot until the next claim.
            end.park();
            if ring::closed_bits(r, lay) & SENDERS_GONE != 0 {
                // Everything published before the close is visible now.
                return match ring::claim_recv(r, lay, end.claim(), want).map_err(failed)? {
                    Some(claimed) => Ok(claimed),
                    None => Err(RecvError::Disconnected),
                };
            }
            if matches!(until, Until::Now) {
                // A poller must notice dead senders (and skip the slots
                // they claimed) too.
                if crate::wait::peer_check_due(&end.peer_check_at) {
                    self.end.check_wait()?;
                    continue;
                }
                return Err(RecvError::Empty);
            }
            let b = backoff.get_or_insert_with(|| Backoff::new(end.strategy));
            let (_, deq) = ring::positions(r, lay).map_err(failed)?;
            let (deq_w, seq_w) = (r.u64_at(lay.deq), r.u64_at(lay.slot(deq)));
            let mut ready = || {
                // ORDERING: Relaxed — a wake-up hint; the claim re-checks.
                deq_w.is_none_or(|w| w.load(Ordering::Relaxed) != deq)
                    || seq_w.is_none_or(|w| {
                        w.load(Ordering::Relaxed) & !ring::SKIPPED == deq.wrapping_add(1)
                    })
                    || ring::closed_bits(r, lay) & SENDERS_GONE != 0
            };
            match b.snooze(r, lay.data_wait, until.deadline(), &mut ready) {
                Next::Retry => {}
                Next::TimedOut => return Err(RecvError::Timeout),
                Next::CheckPeers => end.check_wait()?,
            }
        }
    }

    #[inline]
    fn finish(&mut self, pos: u64) -> Result<(), RecvError> {
        self.held = None;
        ring::free(self.end.seg.region(), &self.end.lay, pos)
            .map_err(|e| RecvError::Failed(self.end.seg.named(e)))
    }

    #[inline]
    fn recv_until(&mut self, buf: &mut [u8], until: Until) -> Result<usize, RecvError> {
        let (pos, off, len) = self.next_until(until)?;
        if len > buf.len() {
            // The message stays claimed by this receiver: the next receive
            // returns it.
            return Err(RecvError::BufferTooShort { needed: len });
        }
        self.end
            .seg
            .region()
            .read(off, &mut buf[..len])
            .expect("slot checked");
        failpoint!("mpmc.consumer_after_copy");
        self.finish(pos)?;
        Ok(len)
    }

    /// Copy the next message into `buf` without waiting; its length. On
    /// `BufferTooShort` the message is kept for this receiver's next call
    /// (other receivers go on with the next ones); if this receiver is
    /// dropped first, the message is counted in [`lost`](Self::lost).
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_until(buf, Until::Now)
    }

    /// Copy the next message into `buf`, waiting for one.
    #[inline]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_until(buf, Until::Forever)
    }

    /// Copy the next message into `buf`, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        self.recv_until(buf, Until::after(timeout))
    }

    /// The next message as a new `Vec`, waiting for one.
    pub fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        Ok(self.read()?.to_vec())
    }

    /// [`recv_vec`](Self::recv_vec) without waiting.
    pub fn try_recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        Ok(self.try_read()?.to_vec())
    }

    /// [`recv_vec`](Self::recv_vec), waiting at most `timeout`.
    pub fn recv_vec_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        Ok(self.read_timeout(timeout)?.to_vec())
    }

    /// The next message decoded as a serde value, waiting for one. A
    /// message that does not decode as `T` is kept by this receiver (the
    /// next receive returns it) and the error names the type.
    pub fn recv_value<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.decode_next(Until::Forever, crate::codec::decode::<T>)
    }

    /// [`recv_value`](Self::recv_value) without waiting.
    pub fn try_recv_value<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        self.decode_next(Until::Now, crate::codec::decode::<T>)
    }

    /// [`recv_value`](Self::recv_value), waiting at most `timeout`.
    pub fn recv_value_timeout<T: serde::de::DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvError> {
        self.decode_next(Until::after(timeout), crate::codec::decode::<T>)
    }

    /// The next message as a plain-old-data value (exactly `size_of::<T>()`
    /// bytes, or it is kept as for [`recv_value`](Self::recv_value)).
    pub fn recv_pod<T: bytemuck::Pod>(&mut self) -> Result<T, RecvError> {
        self.decode_next(Until::Forever, crate::codec::decode_pod::<T>)
    }

    /// [`recv_pod`](Self::recv_pod) without waiting.
    pub fn try_recv_pod<T: bytemuck::Pod>(&mut self) -> Result<T, RecvError> {
        self.decode_next(Until::Now, crate::codec::decode_pod::<T>)
    }

    /// [`recv_pod`](Self::recv_pod), waiting at most `timeout`.
    pub fn recv_pod_timeout<T: bytemuck::Pod>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvError> {
        self.decode_next(Until::after(timeout), crate::codec::decode_pod::<T>)
    }

    fn decode_next<T>(
        &mut self,
        until: Until,
        f: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<T, RecvError> {
        let (pos, off, len) = self.next_until(until)?;
        // SAFETY: this receiver holds the claimed slot until `finish`.
        let bytes = unsafe { self.end.seg.region().slice(off, len) }.expect("slot checked");
        let v = f(bytes)?;
        self.finish(pos)?;
        Ok(v)
    }

    /// Receive up to `max` messages with one claim (one CAS) and one
    /// wake-up, handing each to `f` in place (zero-copy), in order; waits
    /// for the first. Returns how many were handed over. Their slots are
    /// freed when this returns (or if `f` panics).
    pub fn recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize, RecvError> {
        self.recv_batch_until(max, Until::Forever, f)
    }

    /// [`recv_batch`](Self::recv_batch) without waiting (`Empty` if none).
    pub fn try_recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize, RecvError> {
        self.recv_batch_until(max, Until::Now, f)
    }

    /// [`recv_batch`](Self::recv_batch), waiting at most `timeout` for the
    /// first message.
    pub fn recv_batch_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
        f: impl FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        self.recv_batch_until(max, Until::after(timeout), f)
    }

    fn recv_batch_until(
        &mut self,
        max: usize,
        until: Until,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, RecvError> {
        if max == 0 {
            return Ok(0);
        }
        if self.held.is_some() {
            // A message kept after BufferTooShort comes first, on its own.
            let g = self.read_until(until)?;
            f(&g);
            return Ok(1);
        }
        let (pos, k) = self.claim_slow(max as u64, until)?;
        let (r, lay) = (self.end.seg.region(), &self.end.lay);
        // Frees what is left of the range however this scope ends.
        let mut range = FreeRange {
            r,
            lay,
            next: pos,
            left: k,
        };
        let mut handed = 0;
        while range.left > 0 {
            let p = range.next;
            if let Slot::Message(off, len) =
                ring::slot_message(r, lay, p).map_err(|e| self.end.seg.named(e))?
            {
                // SAFETY: this receiver claimed position `p` (the CAS on
                // `deq`) and frees it only after `f` returns.
                f(unsafe { r.slice(off, len) }.expect("slot checked"));
                handed += 1;
            }
            // Positions wrap (hostile ones may start anywhere).
            range.next = p.wrapping_add(1);
            range.left -= 1;
            ring::free_quietly(r, lay, p).map_err(|e| self.end.seg.named(e))?;
        }
        Ok(handed)
    }

    fn read_until(&mut self, until: Until) -> Result<ReadGuard<'_>, RecvError> {
        let (pos, off, len) = self.next_until(until)?;
        Ok(ReadGuard {
            receiver: self,
            pos,
            off,
            len,
        })
    }

    /// Borrow the next message in its slot (zero-copy), waiting for one; the
    /// slot is freed when the guard drops.
    pub fn read(&mut self) -> Result<ReadGuard<'_>, RecvError> {
        self.read_until(Until::Forever)
    }

    /// [`read`](Self::read) without waiting.
    pub fn try_read(&mut self) -> Result<ReadGuard<'_>, RecvError> {
        self.read_until(Until::Now)
    }

    /// [`read`](Self::read), waiting at most `timeout`.
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<ReadGuard<'_>, RecvError> {
        self.read_until(Until::after(timeout))
    }

    /// A blocking iterator over messages as `Vec`s; it ends when every
    /// sender is gone and the queue is drained.
    pub fn iter(&mut self) -> Iter<'_> {
        Iter {
            receiver: self,
            done: false,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if self.end.seg.forked_copy() {
            return; // a forked child's copy of the parent's handle
        }
        if let Some(pos) = self.held.take() {
            // A message kept after BufferTooShort and never read: it goes
            // with this receiver, and is counted in `lost`.
            let (r, lay) = (self.end.seg.region(), &self.end.lay);
            ring::count_lost(r, lay);
            let _ = ring::free(r, lay, pos);
        }
        self.end.detach_end();
    }
}

/// A claimed slot, written in place; derefs to `&mut [u8]` of the claimed
/// length.
#[derive(Debug)]
pub struct SendGrant<'a> {
    sender: &'a mut Sender,
    pos: u64,
    len: usize,
    done: bool,
}

impl SendGrant<'_> {
    /// Publish the first `len` bytes (`len <=` the claimed length).
    pub fn commit_len(mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(Error::InvalidArgument(format!(
                "commit of {len} bytes, but {} were claimed",
                self.len
            )));
        }
        self.done = true;
        let end = &self.sender.end;
        failpoint!("mpmc.after_claim");
        ring::publish(end.seg.region(), &end.lay, self.pos, len as u32)
            .map_err(|e| end.seg.named(e))
    }

    /// Publish all claimed bytes.
    pub fn commit(self) -> Result<()> {
        let len = self.len;
        self.commit_len(len)
    }
}

impl std::ops::Deref for SendGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let end = &self.sender.end;
        // SAFETY: this sender claimed the slot (its CAS on `enq`) and has
        // not published it: nobody else touches its payload.
        unsafe { end.seg.region().slice(end.lay.payload(self.pos), self.len) }
            .expect("slot checked at open")
    }
}

impl std::ops::DerefMut for SendGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let end = &self.sender.end;
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe {
            end.seg
                .region()
                .slice_mut(end.lay.payload(self.pos), self.len)
        }
        .expect("slot checked at open")
    }
}

impl Drop for SendGrant<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Abandoned: mark the slot skipped so receivers step over it.
            let end = &self.sender.end;
            let _ = ring::abandon(end.seg.region(), &end.lay, self.pos);
        }
    }
}

/// The claimed, not yet freed part of a received range.
struct FreeRange<'a> {
    r: &'a crate::region::Region,
    lay: &'a Layout,
    next: u64,
    left: u64,
}

impl Drop for FreeRange<'_> {
    fn drop(&mut self) {
        for i in 0..self.left {
            let _ = ring::free_quietly(self.r, self.lay, self.next.wrapping_add(i));
        }
        let _ = crate::wait::wake(self.r, self.lay.space_wait);
    }
}

/// A message borrowed in its slot; the slot is freed on drop.
#[derive(Debug)]
pub struct ReadGuard<'a> {
    receiver: &'a mut Receiver,
    pos: u64,
    off: usize,
    len: usize,
}

impl Deref for ReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: this receiver claimed the slot (its CAS on `deq`) and has
        // not freed it: no correct peer writes it until `free`, which needs
        // this guard's drop.
        unsafe { self.receiver.end.seg.region().slice(self.off, self.len) }.expect("slot checked")
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        let _ = self.receiver.finish(self.pos);
    }
}

/// Blocking iterator from [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a> {
    receiver: &'a mut Receiver,
    done: bool,
}

impl Iterator for Iter<'_> {
    type Item = Result<Vec<u8>, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        crate::error::iter_step(self.receiver.recv_vec(), &mut self.done)
    }
}
