//! The multi-producer multi-consumer queue: the protocol over a
//! [`Region`]. Dmitry Vyukov's bounded MPMC queue (a sequence word per
//! slot), with the claims recorded so that a dead claimer's slot can be
//! recovered.
//!
//! # Slots
//!
//! `cap` slots (a power of two) of `stride` bytes, each
//! `[seq u64][len u32][reserved u32][payload: slot_size bytes]`, rounded up
//! to 64 bytes so the sequence word shares the payload's cache line.
//!
//! `seq` (bits 0..63) says whose turn it is for position `pos` (slot index
//! `pos & (cap - 1)`): `pos` — a producer may claim it; `pos + 1` — a
//! consumer may; `pos + cap` — the next lap's producer may. Bit 63 marks a
//! slot that recovery skipped (its producer died after claiming it).
//!
//! # Claiming
//!
//! A producer reads `enq`, checks `seq == pos`, stores `pos + 1` into its
//! peer entry's `claim` word, then CASes `enq` from `pos` to `pos + 1`;
//! it writes the payload and stores `seq = pos + 1` with Release. A consumer
//! mirrors it on `deq`, reads, and stores `seq = pos + cap`. The claim is
//! recorded *before* the CAS (which is Release), so whoever sees `enq > pos`
//! (Acquire) also sees the claim of the process that took `pos`.
//!
//! # Recovery
//!
//! A slot stuck at `seq == pos` with `enq > pos` was claimed and never
//! published. If every peer whose claim is `pos + 1` is dead (by its
//! kernel-released lock), nobody will publish it: recovery CASes `seq` from
//! `pos` to `(pos + 1) | SKIPPED`, and consumers step over it. Likewise a
//! slot stuck at `seq == pos + 1` with `deq > pos` whose claimer is dead is
//! freed (`seq = pos + cap`). Each recovery counts one lost message. A live
//! claimer always has its claim recorded, so it is never skipped; a dead
//! one whose claim is stale (its CAS failed) matches a slot that is either
//! not stuck or stuck because of another claimer, dead as well.

use crate::error::Result;
use crate::region::Region;
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{self, WaitCell};

/// Bytes before the payload in a slot.
pub(crate) const SLOT_HEADER: u64 = 16;
/// Bit 63 of `seq`: the slot was skipped by recovery.
pub(crate) const SKIPPED: u64 = 1 << 63;
/// `closed` bit: the stream has ended: the creator let go and no sender is
/// left ([`end_if_unheld`]). Final: later senders are refused.
pub(crate) const SENDERS_GONE: u32 = 1;
// Bit 2 (`RECEIVERS_GONE` in earlier builds) is no longer set: receivers
// may join at any time, so "no receiver now" is decided where a sender
// waits (`End::receivers_gone`), never recorded.
/// Largest capacity, in slots.
pub(crate) const MAX_SLOTS: u64 = 1 << 24;
/// Largest slot payload, in bytes.
pub(crate) const MAX_SLOT_SIZE: u64 = 1 << 24;

/// Bytes per slot for `slot_size` payload bytes.
pub(crate) fn stride(slot_size: u64) -> u64 {
    (SLOT_HEADER + slot_size).div_ceil(64) * 64
}

/// Where the queue's words are in a region.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// Enqueue position, u64 (producers' line).
    pub(crate) enq: usize,
    /// Dequeue position, u64 (consumers' line).
    pub(crate) deq: usize,
    /// Consumers sleep here when the queue is empty.
    pub(crate) data_wait: WaitCell,
    /// Producers sleep here when it is full.
    pub(crate) space_wait: WaitCell,
    /// The `closed` bits, u32.
    pub(crate) closed: usize,
    /// Messages lost in flight in dead processes, u64.
    pub(crate) lost: usize,
    /// Start of slot 0.
    pub(crate) slots: usize,
    /// Slots, a power of two.
    pub(crate) cap: u64,
    /// Payload bytes per slot.
    pub(crate) slot_size: u64,
    /// Bytes per slot.
    pub(crate) stride: u64,
}

impl Layout {
    /// Bytes of the queue area: four 128-byte lines (enq, deq, data-wait,
    /// space-wait), then the slots.
    pub(crate) fn area_size(cap: u64, slot_size: u64) -> u64 {
        4 * crate::header::LINE as u64 + cap * stride(slot_size)
    }

    /// The layout in a segment whose queue area starts at `base`.
    pub(crate) fn in_segment(
        base: usize,
        closed: usize,
        lost: usize,
        cap: u64,
        slot_size: u64,
    ) -> Layout {
        let line = crate::header::LINE;
        Layout {
            enq: base,
            deq: base + line,
            data_wait: WaitCell {
                off: base + 2 * line,
            },
            space_wait: WaitCell {
                off: base + 3 * line,
            },
            closed,
            lost,
            slots: base + 4 * line,
            cap,
            slot_size,
            stride: stride(slot_size),
        }
    }

    /// A packed layout for heap models: wait cells (12 bytes) 16 apart,
    /// slots at 64.
    #[allow(dead_code)]
    pub(crate) fn packed(cap: u64, slot_size: u64) -> Layout {
        Layout {
            enq: 0,
            deq: 8,
            data_wait: WaitCell { off: 16 },
            space_wait: WaitCell { off: 32 },
            closed: 48,
            lost: 56,
            slots: 64,
            cap,
            slot_size,
            stride: stride(slot_size),
        }
    }

    /// Region bytes a packed layout needs.
    #[allow(dead_code)]
    pub(crate) fn packed_size(cap: u64, slot_size: u64) -> usize {
        64 + (cap * stride(slot_size)) as usize
    }

    /// Offset of the slot for position `pos`.
    #[inline]
    pub(crate) fn slot(&self, pos: u64) -> usize {
        self.slots + ((pos & (self.cap - 1)) * self.stride) as usize
    }

    /// Offset of the payload of the slot for `pos`.
    #[inline]
    pub(crate) fn payload(&self, pos: u64) -> usize {
        self.slot(pos) + SLOT_HEADER as usize
    }
}

use crate::error::corrupt as corrupted;
use crate::region::word;

/// Load the `closed` bits.
#[inline]
pub(crate) fn closed_bits(r: &Region, lay: &Layout) -> u32 {
    // ORDERING: Acquire — pairs with the Release `fetch_or` in `close`:
    // whoever sees SENDERS_GONE sees every message published before it.
    r.u32_at(lay.closed)
        .map_or(0, |w| w.load(Ordering::Acquire))
}

/// Set `closed` bits and wake both sides (the loom models' plain close).
#[cfg(loom)]
pub(crate) fn close(r: &Region, lay: &Layout, bits: u32) {
    if let Some(w) = r.u32_at(lay.closed) {
        // ORDERING: Release — pairs with the Acquire load in `closed_bits`.
        w.fetch_or(bits, Ordering::Release);
    }
    let _ = wait::wake(r, lay.data_wait);
    let _ = wait::wake(r, lay.space_wait);
}

/// `closed` bit: the queue's creator still holds it open (set at creation,
/// cleared when it lets go, closes or dies). While set, the stream does not
/// end however many senders come and go.
pub(crate) const CREATOR_HOLDS: u32 = 4;
/// `closed` bit: a receiver has attached at least once. A sender waiting
/// for room gives up when no receiver is attached and either one was (the
/// receivers came and all went) or the creator let go.
pub(crate) const RECEIVER_SEEN: u32 = 8;
/// What each membership change (a handle joining or leaving, the creator
/// letting go) adds to the `closed` word, in its bits 8..32: a closer that
/// decided "nobody is left" on a word that has changed since must look
/// again.
pub(crate) const EPOCH: u32 = 1 << 8;

/// Record a membership change that the caller has just made visible (its
/// peer entry, stored with Release): returns the word before it.
pub(crate) fn bump(r: &Region, lay: &Layout) -> Result<u32> {
    // ORDERING: AcqRel — the RMWs on this word form one chain: a later
    // joiner's or leaver's bump (or a closer's load) acquires every earlier
    // one's peer-entry store, and a closer's CAS fails if any bump came
    // after its load.
    Ok(word32(r, lay.closed)?.fetch_add(EPOCH, Ordering::AcqRel))
}

/// Record that a receiver has attached.
pub(crate) fn receiver_seen(r: &Region, lay: &Layout) -> Result<()> {
    // ORDERING: Relaxed — a hint for senders' give-up decision, which
    // re-reads the peer table anyway.
    word32(r, lay.closed)?.fetch_or(RECEIVER_SEEN, Ordering::Relaxed);
    Ok(())
}

/// The creator lets go of the queue (a membership change too).
pub(crate) fn let_go(r: &Region, lay: &Layout) -> Result<()> {
    // ORDERING: AcqRel — as in `bump`.
    word32(r, lay.closed)?.fetch_and(!CREATOR_HOLDS, Ordering::AcqRel);
    Ok(())
}

/// End the stream (set SENDERS_GONE and wake everyone) unless something
/// keeps it open: the creator's hold, or a sender that `senders_attached`
/// finds. Call after [`bump`] or [`let_go`]. Returns whether the stream
/// has ended.
pub(crate) fn end_if_unheld(
    r: &Region,
    lay: &Layout,
    senders_attached: &mut dyn FnMut() -> Result<bool>,
) -> Result<bool> {
    let w = word32(r, lay.closed)?;
    // A hostile peer could change the word forever: bounded.
    for _ in 0..1000 {
        // ORDERING: Acquire — sees the peer entries of every handle whose
        // bump is in the chain up to the value read.
        let v = w.load(Ordering::Acquire);
        if v & SENDERS_GONE != 0 {
            return Ok(true);
        }
        if v & CREATOR_HOLDS != 0 || senders_attached()? {
            return Ok(false);
        }
        // ORDERING: AcqRel on success — Release: the messages published
        // before are visible to whoever sees SENDERS_GONE (as in `close`);
        // failure: somebody joined or left since our load, look again.
        if w.compare_exchange(v, v | SENDERS_GONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let _ = wait::wake(r, lay.data_wait);
            let _ = wait::wake(r, lay.space_wait);
            return Ok(true);
        }
    }
    Ok(false)
}

fn word32(r: &Region, off: usize) -> Result<&crate::sync::AtomicU32> {
    r.u32_at(off)
        .ok_or_else(|| corrupted(format!("word at {off} outside the segment")))
}

/// Messages lost in flight so far.
pub(crate) fn lost(r: &Region, lay: &Layout) -> u64 {
    // ORDERING: Relaxed — a statistic.
    r.u64_at(lay.lost).map_or(0, |w| w.load(Ordering::Relaxed))
}

/// Count one message lost.
pub(crate) fn count_lost(r: &Region, lay: &Layout) {
    if let Some(w) = r.u64_at(lay.lost) {
        // ORDERING: Relaxed — a statistic.
        w.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where a handle records what it claims: `pos` holds the first position
/// plus one (0: none), `len` how many positions from there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClaimRec<'a> {
    pub(crate) pos: &'a AtomicU64,
    pub(crate) len: &'a AtomicU64,
}

impl ClaimRec<'_> {
    #[inline]
    fn record(&self, pos: u64, len: u64) {
        // ORDERING: Relaxed — both published by the Release CAS that
        // follows in the claim.
        self.len.store(len, Ordering::Relaxed);
        // ORDERING: Relaxed — as above.
        self.pos.store(pos.wrapping_add(1), Ordering::Relaxed);
    }
}

/// How many consecutive positions from `pos` (at least 1, at most `want`)
/// have the sequence `pos + i + ahead`.
#[inline]
fn run_len(r: &Region, lay: &Layout, pos: u64, ahead: u64, want: u64) -> Result<u64> {
    let mut k = 1;
    // ORDERING: Acquire — as for the first slot in the claims.
    while k < want.min(lay.cap)
        && word(r, lay.slot(pos.wrapping_add(k)))?.load(Ordering::Acquire) & !SKIPPED
            == pos.wrapping_add(k).wrapping_add(ahead)
    {
        k += 1;
    }
    Ok(k)
}

/// Claim up to `want` consecutive positions for sending (at least one),
/// recording them in `claim` first: `(first, count)`, or `None` when the
/// queue is full.
#[inline]
pub(crate) fn claim_send(
    r: &Region,
    lay: &Layout,
    claim: ClaimRec<'_>,
    want: u64,
) -> Result<Option<(u64, u64)>> {
    let enq = word(r, lay.enq)?;
    // ORDERING: Relaxed — only a starting guess; the CAS below decides.
    let mut pos = enq.load(Ordering::Relaxed);
    loop {
        // ORDERING: Acquire — pairs with the consumer's Release in `free`
        // (its reads of the slot are done before we write it).
        let seq = word(r, lay.slot(pos))?.load(Ordering::Acquire) & !SKIPPED;
        let diff = seq.wrapping_sub(pos) as i64;
        if diff == 0 {
            // Free slots stay free until claimed, so the run seen here is
            // still free if the CAS succeeds.
            let k = run_len(r, lay, pos, 0, want)?;
            claim.record(pos, k);
            // ORDERING: Release on success — a recoverer that reads `enq >
            // pos` (Acquire) sees our claim; Relaxed on failure: we retry.
            match enq.compare_exchange(
                pos,
                pos.wrapping_add(k),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Some((pos, k))),
                Err(cur) => pos = cur,
            }
        } else if diff < 0 {
            if diff < -(lay.cap as i64) {
                return Err(corrupted(format!(
                    "slot of position {pos} has sequence {seq}"
                )));
            }
            // The slot's previous lap is not consumed yet: full.
            return Ok(None);
        } else {
            // ORDERING: Relaxed — as above.
            let cur = enq.load(Ordering::Relaxed);
            if cur == pos {
                return Err(corrupted(format!(
                    "slot of position {pos} has sequence {seq}, ahead of the enqueue position"
                )));
            }
            pos = cur;
        }
    }
}

/// Publish the message written into the slot of `pos` (`len` bytes) and
/// wake sleeping consumers.
#[inline]
pub(crate) fn publish(r: &Region, lay: &Layout, pos: u64, len: u32) -> Result<()> {
    publish_quietly(r, lay, pos, len)?;
    let _ = wait::wake(r, lay.data_wait);
    Ok(())
}

/// [`publish`] without the wake (a batch wakes once, at its end).
#[inline]
pub(crate) fn publish_quietly(r: &Region, lay: &Layout, pos: u64, len: u32) -> Result<()> {
    r.write(lay.slot(pos) + 8, &len.to_ne_bytes())
        .ok_or_else(|| corrupted("slot outside the segment".into()))?;
    // ORDERING: Release — publishes the payload and length; pairs with the
    // Acquire load in `claim_recv`.
    word(r, lay.slot(pos))?.store(pos.wrapping_add(1), Ordering::Release);
    Ok(())
}

/// Claim up to `want` consecutive positions for receiving (at least one),
/// recording them in `claim` first: `(first, count)`, or `None` when the
/// queue is empty.
#[inline]
pub(crate) fn claim_recv(
    r: &Region,
    lay: &Layout,
    claim: ClaimRec<'_>,
    want: u64,
) -> Result<Option<(u64, u64)>> {
    let deq = word(r, lay.deq)?;
    // ORDERING: Relaxed — a starting guess; the CAS decides.
    let mut pos = deq.load(Ordering::Relaxed);
    loop {
        // ORDERING: Acquire — pairs with the producer's Release in
        // `publish` (or recovery's in `skip_unpublished`).
        let seq = word(r, lay.slot(pos))?.load(Ordering::Acquire) & !SKIPPED;
        let diff = seq.wrapping_sub(pos.wrapping_add(1)) as i64;
        if diff == 0 {
            // Published slots stay published until claimed.
            let k = run_len(r, lay, pos, 1, want)?;
            claim.record(pos, k);
            // ORDERING: Release on success — as in `claim_send`.
            match deq.compare_exchange(
                pos,
                pos.wrapping_add(k),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Some((pos, k))),
                Err(cur) => pos = cur,
            }
        } else if diff < 0 {
            if diff < -(lay.cap as i64) - 1 {
                return Err(corrupted(format!(
                    "slot of position {pos} has sequence {seq}"
                )));
            }
            return Ok(None);
        } else {
            // ORDERING: Relaxed — as above.
            let cur = deq.load(Ordering::Relaxed);
            if cur == pos {
                return Err(corrupted(format!(
                    "slot of position {pos} has sequence {seq}, ahead of the dequeue position"
                )));
            }
            pos = cur;
        }
    }
}

/// What a claimed slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// A message: payload offset and length.
    Message(usize, usize),
    /// Skipped by recovery: free it and move on.
    Skipped,
}

/// Read the claimed slot of `pos`: validated length, or skipped.
#[inline]
pub(crate) fn slot_message(r: &Region, lay: &Layout, pos: u64) -> Result<Slot> {
    // ORDERING: Relaxed — we hold the slot; the Acquire in `claim_recv`
    // already ordered this after its publication.
    if word(r, lay.slot(pos))?.load(Ordering::Relaxed) & SKIPPED != 0 {
        return Ok(Slot::Skipped);
    }
    let mut b = [0u8; 4];
    r.read(lay.slot(pos) + 8, &mut b)
        .ok_or_else(|| corrupted("slot outside the segment".into()))?;
    let len = u32::from_ne_bytes(b) as u64;
    if len > lay.slot_size {
        return Err(corrupted(format!(
            "slot of position {pos} claims {len} bytes; slots hold {}",
            lay.slot_size
        )));
    }
    Ok(Slot::Message(lay.payload(pos), len as usize))
}

/// Give the slot of `pos` back to the producers (after reading it) and
/// wake sleeping producers.
#[inline]
pub(crate) fn free(r: &Region, lay: &Layout, pos: u64) -> Result<()> {
    free_quietly(r, lay, pos)?;
    let _ = wait::wake(r, lay.space_wait);
    Ok(())
}

/// [`free`] without the wake (a batch wakes once, at its end).
#[inline]
pub(crate) fn free_quietly(r: &Region, lay: &Layout, pos: u64) -> Result<()> {
    // ORDERING: Release — our reads of the slot happen before the next
    // lap's producer writes it; pairs with the Acquire in `claim_send`.
    word(r, lay.slot(pos))?.store(pos.wrapping_add(lay.cap), Ordering::Release);
    Ok(())
}

/// The current positions `(enq, deq)`.
pub(crate) fn positions(r: &Region, lay: &Layout) -> Result<(u64, u64)> {
    // ORDERING: Acquire — pairs with the Release CASes in the claims: the
    // claims recorded for positions below these are visible.
    Ok((
        word(r, lay.enq)?.load(Ordering::Acquire),
        word(r, lay.deq)?.load(Ordering::Acquire),
    ))
}

/// The sequence word of the slot of `pos`, as it is now.
pub(crate) fn seq(r: &Region, lay: &Layout, pos: u64) -> Result<u64> {
    // ORDERING: Acquire — pairs with the Release stores of `seq` in
    // `publish_quietly`, `free_quietly` and recovery; the caller compares
    // two such reads around a peer-table scan, and Acquire keeps the scan
    // between them.
    Ok(word(r, lay.slot(pos))?.load(Ordering::Acquire))
}

/// Publish the claimed slot of `pos` as skipped (its claimer gave it up).
pub(crate) fn abandon(r: &Region, lay: &Layout, pos: u64) -> Result<()> {
    // ORDERING: Release — as in `publish`.
    word(r, lay.slot(pos))?.store(pos.wrapping_add(1) | SKIPPED, Ordering::Release);
    let _ = wait::wake(r, lay.data_wait);
    Ok(())
}

/// If the slot of `pos` is claimed by a producer but unpublished, mark it
/// skipped (the caller established that its claimer is dead). `true` if
/// this call did it.
pub(crate) fn skip_unpublished(r: &Region, lay: &Layout, pos: u64) -> Result<bool> {
    let (enq, _) = positions(r, lay)?;
    if enq <= pos {
        return Ok(false); // not claimed at all
    }
    let seq = word(r, lay.slot(pos))?;
    // ORDERING: AcqRel — Release publishes the skip to consumers (their
    // Acquire in `claim_recv`); Acquire orders us after the claim.
    let done = seq
        .compare_exchange(
            pos,
            pos.wrapping_add(1) | SKIPPED,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok();
    if done {
        count_lost(r, lay);
        let _ = wait::wake(r, lay.data_wait);
    }
    Ok(done)
}

/// If the slot of `pos` is claimed by a consumer but not freed, free it (the
/// caller established that its claimer is dead). `true` if this call did it.
pub(crate) fn free_unreleased(r: &Region, lay: &Layout, pos: u64) -> Result<bool> {
    let (_, deq) = positions(r, lay)?;
    if deq <= pos {
        return Ok(false);
    }
    let seq = word(r, lay.slot(pos))?;
    // ORDERING: Relaxed — read only to build the expected value of the CAS.
    let cur = seq.load(Ordering::Relaxed);
    if cur & !SKIPPED != pos.wrapping_add(1) {
        return Ok(false);
    }
    // ORDERING: AcqRel — Release hands the slot to the next lap's producer
    // (its Acquire in `claim_send`).
    let done = seq
        .compare_exchange(
            cur,
            pos.wrapping_add(lay.cap),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok();
    if done {
        if cur & SKIPPED == 0 {
            count_lost(r, lay);
        }
        let _ = wait::wake(r, lay.space_wait);
    }
    Ok(done)
}

/// Initialise the slots' sequence words (`seq[i] = i`); the creator calls
/// it before the segment is READY.
pub(crate) fn init(r: &Region, lay: &Layout) -> Result<()> {
    for i in 0..lay.cap {
        // ORDERING: Relaxed — published by the header's READY store.
        word(r, lay.slot(i))?.store(i, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::error::Error;

    struct Words(AtomicU64, AtomicU64);
    impl Words {
        fn rec(&self) -> ClaimRec<'_> {
            ClaimRec {
                pos: &self.0,
                len: &self.1,
            }
        }
    }

    fn queue(cap: u64, slot: u64) -> (Region, Layout, Words) {
        let lay = Layout::packed(cap, slot);
        let r = Region::heap(Layout::packed_size(cap, slot));
        init(&r, &lay).unwrap();
        (r, lay, Words(AtomicU64::new(0), AtomicU64::new(0)))
    }

    fn send(r: &Region, lay: &Layout, c: &Words, msg: &[u8]) -> bool {
        match claim_send(r, lay, c.rec(), 1).unwrap() {
            Some((pos, 1)) => {
                r.write(lay.payload(pos), msg).unwrap();
                publish(r, lay, pos, msg.len() as u32).unwrap();
                true
            }
            None => false,
            Some(other) => panic!("asked for one, got {other:?}"),
        }
    }

    fn recv(r: &Region, lay: &Layout, c: &Words) -> Option<Option<Vec<u8>>> {
        let (pos, 1) = claim_recv(r, lay, c.rec(), 1).unwrap()? else {
            panic!("asked for one")
        };
        let out = match slot_message(r, lay, pos).unwrap() {
            Slot::Message(off, len) => {
                let mut v = vec![0; len];
                r.read(off, &mut v).unwrap();
                Some(v)
            }
            Slot::Skipped => None,
        };
        free(r, lay, pos).unwrap();
        Some(out)
    }

    #[test]
    fn fifo_full_and_wrap_with_capacity_3_rounded_to_4() {
        let (r, lay, c) = queue(4, 8);
        for round in 0u8..10 {
            for i in 0..4 {
                assert!(send(&r, &lay, &c, &[round, i]));
            }
            assert!(!send(&r, &lay, &c, &[9]), "full at 4");
            for i in 0..4 {
                assert_eq!(recv(&r, &lay, &c), Some(Some(vec![round, i])));
            }
            assert_eq!(recv(&r, &lay, &c), None, "empty");
        }
    }

    #[test]
    fn dead_producer_slot_is_skipped_once_and_counted() {
        let (r, lay, c) = queue(4, 8);
        assert!(send(&r, &lay, &c, b"a"));
        // A producer claims position 1 and dies before publishing.
        assert_eq!(claim_send(&r, &lay, c.rec(), 1).unwrap(), Some((1, 1)));
        assert!(send(&r, &lay, &c, b"c"));
        assert_eq!(recv(&r, &lay, &c), Some(Some(b"a".to_vec())));
        assert_eq!(recv(&r, &lay, &c), None, "stuck behind the claim");
        assert!(skip_unpublished(&r, &lay, 1).unwrap());
        assert!(!skip_unpublished(&r, &lay, 1).unwrap(), "only once");
        assert!(
            !skip_unpublished(&r, &lay, 3).unwrap(),
            "unclaimed positions are not skipped"
        );
        assert_eq!(recv(&r, &lay, &c), Some(None), "the skipped slot");
        assert_eq!(recv(&r, &lay, &c), Some(Some(b"c".to_vec())));
        assert_eq!(lost(&r, &lay), 1);
    }

    #[test]
    fn dead_consumer_slot_is_freed_once_and_counted() {
        let (r, lay, c) = queue(2, 8);
        assert!(send(&r, &lay, &c, b"a"));
        assert!(send(&r, &lay, &c, b"b"));
        // A consumer claims position 0 and dies before freeing it.
        assert_eq!(claim_recv(&r, &lay, c.rec(), 1).unwrap(), Some((0, 1)));
        assert_eq!(recv(&r, &lay, &c), Some(Some(b"b".to_vec())));
        assert!(!send(&r, &lay, &c, b"c"), "blocked by the held slot");
        assert!(
            !free_unreleased(&r, &lay, 1).unwrap(),
            "slot 1 was freed normally"
        );
        assert!(free_unreleased(&r, &lay, 0).unwrap());
        assert!(!free_unreleased(&r, &lay, 0).unwrap(), "only once");
        assert!(send(&r, &lay, &c, b"c"));
        assert_eq!(lost(&r, &lay), 1);
    }

    #[test]
    fn ranges_claim_only_consecutive_ready_slots() {
        let (r, lay, c) = queue(8, 8);
        let (pos, k) = claim_send(&r, &lay, c.rec(), 5).unwrap().unwrap();
        assert_eq!((pos, k), (0, 5));
        assert_eq!(
            (c.0.load(Ordering::Relaxed), c.1.load(Ordering::Relaxed)),
            (1, 5),
            "recorded"
        );
        // Publish 0, 1 and 3: a receiver's range stops at the gap.
        for p in [0, 1, 3] {
            publish(&r, &lay, p, 0).unwrap();
        }
        assert_eq!(claim_recv(&r, &lay, c.rec(), 8).unwrap(), Some((0, 2)));
        assert_eq!(
            claim_recv(&r, &lay, c.rec(), 8).unwrap(),
            None,
            "2 is unpublished"
        );
        // Only 3 slots are free until 0 and 1 are freed.
        assert_eq!(claim_send(&r, &lay, c.rec(), 8).unwrap(), Some((5, 3)));
        assert_eq!(claim_send(&r, &lay, c.rec(), 8).unwrap(), None);
        free(&r, &lay, 0).unwrap();
        free(&r, &lay, 1).unwrap();
        assert_eq!(claim_send(&r, &lay, c.rec(), 8).unwrap(), Some((8, 2)));
    }

    #[test]
    fn hostile_sequences_and_lengths_are_errors() {
        let (r, lay, c) = queue(4, 8);
        // A sequence far behind: corrupt, for both sides.
        r.u64_at(lay.slot(0))
            .unwrap()
            .store(1 << 40, Ordering::Relaxed);
        assert!(matches!(
            claim_send(&r, &lay, c.rec(), 1),
            Err(Error::Corrupted { .. })
        ));
        assert!(matches!(
            claim_recv(&r, &lay, c.rec(), 1),
            Err(Error::Corrupted { .. })
        ));
        // A length larger than the slot.
        let (r, lay, c) = queue(4, 8);
        assert!(send(&r, &lay, &c, b"x"));
        r.write(lay.slot(0) + 8, &1000u32.to_ne_bytes()).unwrap();
        let (pos, _) = claim_recv(&r, &lay, c.rec(), 1).unwrap().unwrap();
        assert!(matches!(
            slot_message(&r, &lay, pos),
            Err(Error::Corrupted { .. })
        ));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::wait::{Backoff, WaitStrategy};
    use loom::sync::Arc;

    /// Offsets of three claim records after the slots of a packed layout.
    fn setup(cap: u64) -> (Arc<Region>, Layout, usize) {
        let lay = Layout::packed(cap, 8);
        let size = Layout::packed_size(cap, 8);
        let r = Region::heap(size + 48);
        init(&r, &lay).unwrap();
        (Arc::new(r), lay, size)
    }

    fn rec(r: &Region, off: usize) -> ClaimRec<'_> {
        ClaimRec {
            pos: r.u64_at(off).unwrap(),
            len: r.u64_at(off + 8).unwrap(),
        }
    }

    fn send_wait(r: &Region, lay: &Layout, claim: ClaimRec<'_>, v: u8) {
        let mut b = Backoff::new(WaitStrategy::Adaptive);
        loop {
            if let Some((pos, _)) = claim_send(r, lay, claim, 1).unwrap() {
                r.write(lay.payload(pos), &[v]).unwrap();
                publish(r, lay, pos, 1).unwrap();
                return;
            }
            let (enq, _) = positions(r, lay).unwrap();
            let seq = r.u64_at(lay.slot(enq)).unwrap();
            let enq_w = r.u64_at(lay.enq).unwrap();
            // ORDERING: Relaxed — wake-up hints; the claim re-checks.
            let mut ready = || {
                enq_w.load(Ordering::Relaxed) != enq
                    || seq.load(Ordering::Relaxed) & !SKIPPED == enq
            };
            b.snooze(r, lay.space_wait, None, &mut ready);
        }
    }

    fn recv_wait(r: &Region, lay: &Layout, claim: ClaimRec<'_>) -> u8 {
        let mut b = Backoff::new(WaitStrategy::Adaptive);
        loop {
            if let Some((pos, _)) = claim_recv(r, lay, claim, 1).unwrap() {
                let Slot::Message(off, 1) = slot_message(r, lay, pos).unwrap() else {
                    panic!("bad slot")
                };
                let mut v = [0u8];
                r.read(off, &mut v).unwrap();
                free(r, lay, pos).unwrap();
                return v[0];
            }
            let (_, deq) = positions(r, lay).unwrap();
            let seq = r.u64_at(lay.slot(deq)).unwrap();
            let deq_w = r.u64_at(lay.deq).unwrap();
            // ORDERING: Relaxed — wake-up hints; the claim re-checks.
            let mut ready = || {
                deq_w.load(Ordering::Relaxed) != deq
                    || seq.load(Ordering::Relaxed) & !SKIPPED == deq + 1
            };
            b.snooze(r, lay.data_wait, None, &mut ready);
        }
    }

    /// Two producers, one consumer, capacity 2, three messages: each
    /// arrives once, each producer's in order; the payload hand-off is
    /// checked by loom's race detector.
    #[test]
    fn two_producers_one_consumer_capacity_2() {
        crate::sync::model("mpmc_two_producers_one_consumer_capacity_2", || {
            let (r, lay, c) = setup(2);
            let (r1, r2) = (r.clone(), r.clone());
            let p1 = loom::thread::spawn(move || {
                let claim = rec(&r1, c);
                send_wait(&r1, &lay, claim, 1);
                send_wait(&r1, &lay, claim, 2);
            });
            let p2 = loom::thread::spawn(move || {
                let claim = rec(&r2, c + 16);
                send_wait(&r2, &lay, claim, 10);
            });
            let claim = rec(&r, c + 32);
            let got: Vec<u8> = (0..3).map(|_| recv_wait(&r, &lay, claim)).collect();
            p1.join().unwrap();
            p2.join().unwrap();
            let mine: Vec<u8> = got.iter().copied().filter(|v| *v < 10).collect();
            assert_eq!(mine, [1, 2], "per-producer order in {got:?}");
            assert!(got.contains(&10));
        });
    }

    /// The membership protocol with peer entries as plain words (1:
    /// attached, 2: gone). `join` returns whether the joiner was admitted.
    fn join(r: &Region, lay: &Layout, entry: usize) -> bool {
        // ORDERING: Release — as `peer::attach_any`'s store of ACTIVE.
        r.u32_at(entry).unwrap().store(1, Ordering::Release);
        let v = bump(r, lay).unwrap();
        if v & SENDERS_GONE != 0 {
            // ORDERING: Release — as `peer::detach`.
            r.u32_at(entry).unwrap().store(2, Ordering::Release);
            return false;
        }
        true
    }

    fn leave(r: &Region, lay: &Layout, entry: usize, entries: &[usize]) {
        // ORDERING: Release — as `peer::detach`.
        r.u32_at(entry).unwrap().store(2, Ordering::Release);
        bump(r, lay).unwrap();
        end_if_unheld(r, lay, &mut || {
            // ORDERING: Acquire — as `peer::state`.
            Ok(entries
                .iter()
                .any(|&e| r.u32_at(e).unwrap().load(Ordering::Acquire) == 1))
        })
        .unwrap();
    }

    /// Two last senders leave at once (the creator has let go): one of
    /// them ends the stream. Fails if the leavers skip their bump (each can
    /// then miss the other's leaving).
    #[test]
    fn two_last_leavers_end_the_stream() {
        crate::sync::model("mpmc_two_last_leavers", || {
            let (r, lay, c) = setup(2);
            let entries = [c, c + 4];
            for e in entries {
                assert!(join(&r, &lay, e));
            }
            let r1 = r.clone();
            let t = loom::thread::spawn(move || leave(&r1, &lay, entries[0], &entries));
            leave(&r, &lay, entries[1], &entries);
            t.join().unwrap();
            assert!(closed_bits(&r, &lay) & SENDERS_GONE != 0, "nobody ended it");
        });
    }

    /// A sender joins while the last one leaves: either it is admitted and
    /// the stream stays open until it leaves, or it is refused and the
    /// stream has ended; never admitted into an ended stream.
    #[test]
    fn a_joiner_racing_the_last_leaver_is_admitted_or_refused() {
        crate::sync::model("mpmc_joiner_vs_last_leaver", || {
            let (r, lay, c) = setup(2);
            let entries = [c, c + 4];
            assert!(join(&r, &lay, entries[0]));
            let r1 = r.clone();
            let t = loom::thread::spawn(move || leave(&r1, &lay, entries[0], &entries));
            let admitted = join(&r, &lay, entries[1]);
            t.join().unwrap();
            let gone = closed_bits(&r, &lay) & SENDERS_GONE != 0;
            assert_eq!(admitted, !gone, "admitted {admitted}, ended {gone}");
            if admitted {
                leave(&r, &lay, entries[1], &entries);
                assert!(closed_bits(&r, &lay) & SENDERS_GONE != 0);
            }
        });
    }

    /// The creator lets go while the last sender leaves: the stream ends.
    #[test]
    fn creator_letting_go_and_last_leaver_end_the_stream() {
        crate::sync::model("mpmc_creator_lets_go", || {
            let (r, lay, c) = setup(2);
            let entries = [c];
            r.u32_at(lay.closed)
                .unwrap()
                .fetch_or(CREATOR_HOLDS, Ordering::Relaxed);
            assert!(join(&r, &lay, entries[0]));
            let r1 = r.clone();
            let t = loom::thread::spawn(move || leave(&r1, &lay, entries[0], &entries));
            let_go(&r, &lay).unwrap();
            end_if_unheld(&r, &lay, &mut || {
                // ORDERING: Acquire — as `peer::state`.
                Ok(r.u32_at(entries[0]).unwrap().load(Ordering::Acquire) == 1)
            })
            .unwrap();
            t.join().unwrap();
            assert!(closed_bits(&r, &lay) & SENDERS_GONE != 0, "nobody ended it");
        });
    }

    /// A sender publishes one message and closes the queue: the receiver
    /// gets the message, then sees the queue empty and closed (never empty
    /// and closed with the message still unseen).
    #[test]
    fn close_after_publish_is_seen_after_the_message() {
        crate::sync::model("mpmc_close_after_publish", || {
            let (r, lay, c) = setup(2);
            let r1 = r.clone();
            let p = loom::thread::spawn(move || {
                send_wait(&r1, &lay, rec(&r1, c), 7);
                close(&r1, &lay, SENDERS_GONE);
            });
            let claim = rec(&r, c + 16);
            let mut b = Backoff::new(WaitStrategy::Adaptive);
            let mut got = Vec::new();
            loop {
                if let Some((pos, _)) = claim_recv(&r, &lay, claim, 1).unwrap() {
                    let Slot::Message(off, 1) = slot_message(&r, &lay, pos).unwrap() else {
                        panic!("bad slot")
                    };
                    let mut v = [0u8];
                    r.read(off, &mut v).unwrap();
                    free(&r, &lay, pos).unwrap();
                    got.push(v[0]);
                    continue;
                }
                if closed_bits(&r, &lay) & SENDERS_GONE != 0 {
                    // Everything published before the close is visible now:
                    // one more look, and if it is empty the stream is over
                    // (`got` must then hold the message).
                    let (_, deq) = positions(&r, &lay).unwrap();
                    // ORDERING: Acquire — as in `claim_recv`.
                    if r.u64_at(lay.slot(deq)).unwrap().load(Ordering::Acquire) & !SKIPPED
                        != deq + 1
                    {
                        break;
                    }
                    continue;
                }
                let mut ready = || {
                    closed_bits(&r, &lay) != 0 || {
                        let (_, deq) = positions(&r, &lay).unwrap();
                        // ORDERING: Relaxed — a wake-up hint.
                        r.u64_at(lay.slot(deq)).unwrap().load(Ordering::Relaxed) & !SKIPPED
                            == deq + 1
                    }
                };
                b.snooze(&r, lay.data_wait, None, &mut ready);
            }
            p.join().unwrap();
            assert_eq!(got, [7]);
        });
    }

    /// One producer, two consumers, capacity 2: every message is taken by
    /// exactly one consumer.
    #[test]
    fn one_producer_two_consumers_capacity_2() {
        crate::sync::model("mpmc_one_producer_two_consumers_capacity_2", || {
            let (r, lay, c) = setup(2);
            let (r1, r2) = (r.clone(), r.clone());
            let c1 = loom::thread::spawn(move || recv_wait(&r1, &lay, rec(&r1, c)));
            let c2 = loom::thread::spawn(move || recv_wait(&r2, &lay, rec(&r2, c + 16)));
            let claim = rec(&r, c + 32);
            send_wait(&r, &lay, claim, 1);
            send_wait(&r, &lay, claim, 2);
            let mut got = [c1.join().unwrap(), c2.join().unwrap()];
            got.sort();
            assert_eq!(got, [1, 2]);
        });
    }
}
