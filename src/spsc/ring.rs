//! The single-producer single-consumer byte ring: the protocol, over a
//! [`Region`], with no system call but the futex wake in `wait.rs`.
//!
//! The record format and the commit-by-header idea follow Aeron's
//! `OneToOneRingBuffer`; the cached opposite position follows rtrb.
//!
//! # Frames
//!
//! The data area is `cap` bytes (a power of two). A frame is an 8-byte
//! header followed by the payload, padded to a multiple of 8:
//!
//! `header: u64 = len (bits 0..32) | kind (bits 32..64)`, kind 1 = data,
//! kind 2 = padding (fills the rest of the lap when a frame does not fit
//! before the end). A header of 0 means "nothing committed here yet".
//!
//! # Positions
//!
//! `tail` (producer) and `head` (consumer) are monotonic byte positions;
//! the index is `pos & (cap - 1)`. The producer re-reads `head` only when
//! its cached copy says full. The producer also stores `tail` (Release)
//! after each publication; the consumer does not need it (the headers
//! commit), but a lagging consumer reads it now and then to learn how far
//! it may prefetch (see "Streaming" below).
//!
//! # Commit
//!
//! The producer writes the payload, stores 0 into the header word *after*
//! the frame (so the word at the published tail always reads "not yet"),
//! then stores the frame's header with Release. The consumer loads the
//! header at `head` with Acquire: non-zero means the whole frame is there.
//! A hand-off thus moves the cache line that holds the header and (for
//! small messages) the payload, and no index line. A batch stores the
//! headers of all frames but the first with Relaxed, then the first with
//! Release: one publication for the lot.
//!
//! The zeroed word after the frame must be free space, so the producer
//! keeps 8 bytes of slack: a frame fits when `tail + len + 8 - head <= cap`.
//! The largest message is `cap / 2 - 8` bytes, so that a frame and the
//! padding before it always fit a drained ring in one step.
//!
//! # Streaming
//!
//! Frames are variable-sized, so where frame `k + 1` starts depends on the
//! length in frame `k`'s header: read one after the other, the header loads
//! form a chain of dependent cache misses (one cross-core transfer each).
//! A consumer that is behind therefore learns `tail` and prefetches the
//! lines of [`PREFETCH_LINES`] ahead of `head`, never past the line that
//! holds `tail` (it may still be being written, and pulling it would slow
//! the producer), so the misses overlap.
//!
//! When to read `tail` was measured (64-byte and 8-byte streams, `ringway
//! bench`): on every look, or whenever the consumer has caught up, the
//! second contended line cost a per-message consumer a third of its rate
//! (12 M/s against 17-20 M/s); a consumer that waits therefore watches only
//! the header word at `head` (one cache line moves per hand-off of a small
//! message), and only a first look that finds a frame already committed,
//! [`REFRESH_BYTES`] past the last `tail` seen, re-reads `tail`. Batched
//! reads then went from ~21 to ~33 M/s at 64 bytes.
//!
//! # Untrusted memory
//!
//! Everything read from the region is checked before use: a header's kind
//! and length against the capacity and the room left before the end of the
//! lap, `head` against the producer's own `tail`, `tail` against the
//! consumer's `head` and the capacity, and a header before a published
//! `tail` must not read "not yet". A violation is
//! [`Error::Corrupted`]; no slice is ever formed from an unchecked value.

use crate::error::Result;
use crate::region::Region;
use crate::sync::Ordering;
use crate::wait::{self, WaitCell};

/// Frame header kind: a message.
pub(crate) const KIND_DATA: u32 = 1;
/// Frame header kind: padding to the end of the lap.
pub(crate) const KIND_PAD: u32 = 2;
/// Bytes of a frame header.
pub(crate) const FRAME_HEADER: u64 = 8;
/// Smallest data capacity.
pub(crate) const MIN_CAPACITY: u64 = 32;
/// Largest data capacity (4 GiB): a frame's length must fit the header's
/// 32 bits.
pub(crate) const MAX_CAPACITY: u64 = 1 << 32;
/// How many cache lines ahead of `head` (and before the cached `tail`) the
/// consumer keeps prefetched. 2 lines gave 47-51 M/s on a 64-byte stream,
/// 4 gave 52-64, 8 gave 81-87 (the floor ring: 67-92 in the same runs).
pub(crate) const PREFETCH_LINES: u64 = 8;
/// Bytes of a cache line, for prefetching.
const LINE: u64 = 64;
/// How far (in bytes) a consumer reads by headers alone, past the last
/// `tail` it saw, before it re-reads `tail` (see "Streaming"). Measured at
/// 64 bytes: 256 gave 12.5 M/s per message, 4096 gave 20-21 (and the same
/// batched rate, 31-34 M/s). Small under loom, so the models reach it.
#[cfg(not(loom))]
pub(crate) const REFRESH_BYTES: u64 = 4096;
#[cfg(loom)]
pub(crate) const REFRESH_BYTES: u64 = 16;

/// Bytes a frame of `len` payload bytes occupies.
#[inline]
pub(crate) fn frame_len(len: u64) -> u64 {
    FRAME_HEADER + len.div_ceil(8) * 8
}

/// The largest payload a ring of `cap` data bytes takes: half the ring
/// less a header, so that a frame and the padding before it always fit a
/// drained ring together (a send to a drained ring never needs the consumer
/// to skip padding first).
#[inline]
pub(crate) fn max_message(cap: u64) -> u64 {
    cap / 2 - FRAME_HEADER
}

/// `closed` bit: the producer end is gone (dropped or dead).
pub(crate) const PRODUCER_CLOSED: u32 = 1;
/// `closed` bit: the consumer end is gone (dropped or dead).
pub(crate) const CONSUMER_CLOSED: u32 = 2;

/// Where the ring's words are in a region.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// Published tail, u64.
    pub(crate) tail: usize,
    /// Released head, u64.
    pub(crate) head: usize,
    /// The consumer sleeps here when the ring is empty.
    pub(crate) data_wait: WaitCell,
    /// The producer sleeps here when the ring is full.
    pub(crate) space_wait: WaitCell,
    /// The `closed` bits, u32.
    pub(crate) closed: usize,
    /// Start of the data area.
    pub(crate) data: usize,
    /// Data capacity in bytes, a power of two.
    pub(crate) cap: u64,
}

impl Layout {
    /// Bytes of the ring area for `cap` data bytes in a segment: four
    /// 128-byte lines (tail, head, data-wait, space-wait), then the data.
    pub(crate) fn area_size(cap: u64) -> usize {
        4 * crate::header::LINE + cap as usize
    }

    /// The layout in a segment whose ring area starts at `base`, with the
    /// segment's `closed` word at `closed`.
    pub(crate) fn in_segment(base: usize, closed: usize, cap: u64) -> Layout {
        let line = crate::header::LINE;
        Layout {
            tail: base,
            head: base + line,
            data_wait: WaitCell {
                off: base + 2 * line,
            },
            space_wait: WaitCell {
                off: base + 3 * line,
            },
            closed,
            data: base + 4 * line,
            cap,
        }
    }

    /// A packed layout for heap models (loom, proptest, fuzz): positions 8
    /// bytes apart, wait cells (12 bytes each) 16 apart, the data at 64.
    #[allow(dead_code)]
    pub(crate) fn packed(cap: u64) -> Layout {
        Layout {
            tail: 0,
            head: 8,
            data_wait: WaitCell { off: 16 },
            space_wait: WaitCell { off: 32 },
            closed: 48,
            data: 64,
            cap,
        }
    }

    /// Region bytes a packed layout needs.
    #[allow(dead_code)]
    pub(crate) fn packed_size(cap: u64) -> usize {
        64 + cap as usize
    }

    #[inline]
    fn mask(&self) -> u64 {
        self.cap - 1
    }

    #[inline]
    fn header_off(&self, pos: u64) -> usize {
        self.data + (pos & self.mask()) as usize
    }
}

use crate::error::corrupt as corrupted;
use crate::region::word;

/// Load the `closed` bits.
#[inline]
pub(crate) fn closed_bits(r: &Region, lay: &Layout) -> u32 {
    // ORDERING: Acquire — pairs with the Release `fetch_or` in `close`: a
    // consumer that sees PRODUCER_CLOSED also sees every frame published
    // before it.
    r.u32_at(lay.closed)
        .map_or(0, |w| w.load(Ordering::Acquire))
}

/// Set a `closed` bit and wake the other side. Returns whether that took
/// the consumer's armed doorbell (the caller rings it: the end of the
/// stream is news too).
pub(crate) fn close(r: &Region, lay: &Layout, bit: u32) -> bool {
    if let Some(w) = r.u32_at(lay.closed) {
        // ORDERING: Release — pairs with the Acquire load in `closed_bits`.
        w.fetch_or(bit, Ordering::Release);
    }
    let cell = if bit == PRODUCER_CLOSED {
        lay.data_wait
    } else {
        lay.space_wait
    };
    wait::wake(r, cell)
}

/// Whether published bytes wait unread: the published `tail` is past the
/// released `head`. (Asked by a segment's last holder, whose ring nobody
/// else writes any more.)
pub(crate) fn unread(r: &Region, lay: &Layout) -> bool {
    // ORDERING: Acquire — pairs with the Release stores of `tail` in
    // `publish` and of `head` in `release`.
    let load = |off| r.u64_at(off).map_or(0, |w| w.load(Ordering::Acquire));
    load(lay.tail) != load(lay.head)
}

/// Bytes of published frames not yet released (`tail - head`), at most
/// `cap` (hostile positions cannot make it larger); 0 if unreadable.
pub(crate) fn used(r: &Region, lay: &Layout) -> u64 {
    // ORDERING: Acquire, as in `unread`; the figure is a snapshot.
    let load = |off| r.u64_at(off).map_or(0, |w| w.load(Ordering::Acquire));
    load(lay.tail).wrapping_sub(load(lay.head)).min(lay.cap)
}

/// Whether a ring of `cap` bytes with `used` bytes not yet released has
/// no room for even an empty message: its frame, and the header word
/// after it that `reserve` also needs.
pub(crate) fn full(cap: u64, used: u64) -> bool {
    cap.saturating_sub(used) < frame_len(0) + FRAME_HEADER
}

/// The producer's half of the protocol. Process-local state only.
#[derive(Debug)]
pub(crate) struct ProducerCore {
    lay: Layout,
    /// Next write position, counting unpublished frames.
    tail: u64,
    /// Last `head` we read; may be stale (low), which is safe.
    head_cache: u64,
    /// Position and header of the first frame not yet published.
    pending: Option<(u64, u64)>,
}

impl ProducerCore {
    /// A producer for a fresh ring (all positions 0).
    pub(crate) fn new(lay: Layout) -> ProducerCore {
        ProducerCore {
            lay,
            tail: 0,
            head_cache: 0,
            pending: None,
        }
    }

    #[inline]
    pub(crate) fn layout(&self) -> &Layout {
        &self.lay
    }

    /// The `head` value the producer last read (for waiting on a change).
    #[inline]
    pub(crate) fn head_cache(&self) -> u64 {
        self.head_cache
    }

    /// Whether `need` more bytes (plus the 8-byte slack) fit, re-reading
    /// `head` only if the cached copy says no.
    #[inline]
    fn room(&mut self, r: &Region, need: u64) -> Result<bool> {
        let cap = self.lay.cap;
        if self.tail + need + FRAME_HEADER - self.head_cache <= cap {
            return Ok(true);
        }
        // ORDERING: Acquire — pairs with the consumer's Release store of
        // head in `ConsumerCore::release`: its reads of the frames before
        // `head` are done before we overwrite them.
        let head = word(r, self.lay.head)?.load(Ordering::Acquire);
        if head > self.tail || self.tail - head > cap || head % 8 != 0 || head < self.head_cache {
            return Err(corrupted(format!(
                "consumer position {head} is inconsistent with producer position {}",
                self.tail
            )));
        }
        self.head_cache = head;
        Ok(self.tail + need + FRAME_HEADER - head <= cap)
    }

    /// Append a frame header at `tail` (its payload is written already).
    #[inline]
    fn push_frame(&mut self, r: &Region, kind: u32, len: u64) -> Result<()> {
        let h = len | (kind as u64) << 32;
        if self.pending.is_none() {
            self.pending = Some((self.tail, h));
        } else {
            // ORDERING: Relaxed — made visible by the Release store of the
            // batch's first header in `publish`, which the consumer must
            // acquire before it can reach this one.
            word(r, self.lay.header_off(self.tail))?.store(h, Ordering::Relaxed);
        }
        self.tail += frame_len(len);
        Ok(())
    }

    /// Find room for a frame of `len` payload bytes (`len <= max`), padding
    /// to the end of the lap if it does not fit before it. `Some(offset)`
    /// of the payload in the region, or `None` when there is no room now.
    #[inline(always)]
    pub(crate) fn reserve(&mut self, r: &Region, len: u64) -> Result<Option<usize>> {
        debug_assert!(len <= max_message(self.lay.cap));
        let flen = frame_len(len);
        let idx = self.tail & self.lay.mask();
        let to_end = self.lay.cap - idx;
        if flen > to_end {
            if self.room(r, to_end + flen)? {
                self.push_frame(r, KIND_PAD, to_end - FRAME_HEADER)?;
            } else {
                if self.room(r, to_end)? {
                    // Only the padding fits: publish it on its own, so the
                    // consumer can move to the next lap and free it all.
                    self.push_frame(r, KIND_PAD, to_end - FRAME_HEADER)?;
                    self.publish(r)?;
                    if self.room(r, flen)? {
                        return Ok(Some(self.lay.header_off(self.tail) + FRAME_HEADER as usize));
                    }
                }
                return Ok(None);
            }
        } else if !self.room(r, flen)? {
            return Ok(None);
        }
        Ok(Some(self.lay.header_off(self.tail) + FRAME_HEADER as usize))
    }

    /// Commit the frame reserved last, with `len` payload bytes (not more
    /// than reserved). Not visible until [`publish`](Self::publish).
    #[inline]
    pub(crate) fn commit(&mut self, r: &Region, len: u64) -> Result<()> {
        self.push_frame(r, KIND_DATA, len)
    }

    /// Make every committed frame visible to the consumer and wake it if it
    /// sleeps. `true` if that took the consumer's armed doorbell (the
    /// caller rings it).
    #[inline]
    pub(crate) fn publish(&mut self, r: &Region) -> Result<bool> {
        let Some((pos, h)) = self.pending.take() else {
            return Ok(false);
        };
        // ORDERING: Relaxed — the word after the last frame reads 0 ("not
        // yet"); made visible by the Release store below, which the consumer
        // acquires before it can reach this word.
        word(r, self.lay.header_off(self.tail))?.store(0, Ordering::Relaxed);
        // ORDERING: Release — publishes the payloads, the later headers of
        // the batch and the zeroed word; pairs with the Acquire load of the
        // header in `ConsumerCore::peek`.
        word(r, self.lay.header_off(pos))?.store(h, Ordering::Release);
        // ORDERING: Release — every frame before `tail` is committed, header
        // included; pairs with the Acquire load of `tail` in
        // `ConsumerCore::refresh_tail`.
        word(r, self.lay.tail)?.store(self.tail, Ordering::Release);
        Ok(wait::wake(r, self.lay.data_wait))
    }
}

/// The consumer's half of the protocol. Process-local state only.
#[derive(Debug)]
pub(crate) struct ConsumerCore {
    lay: Layout,
    /// Next read position.
    head: u64,
    /// Last `head` stored to shared memory.
    released: u64,
    /// The last `tail` read that was ahead of `head`: every frame before it
    /// is committed. May be behind `head` (frames seen by their headers).
    tail_cache: u64,
    /// Cache lines up to this position have been prefetched.
    prefetched: u64,
}

impl ConsumerCore {
    /// A consumer for a fresh ring.
    pub(crate) fn new(lay: Layout) -> ConsumerCore {
        ConsumerCore {
            lay,
            head: 0,
            released: 0,
            tail_cache: 0,
            prefetched: 0,
        }
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.lay
    }

    /// Offset of the header word the consumer waits on.
    #[inline]
    pub(crate) fn head_header_off(&self) -> usize {
        self.lay.header_off(self.head)
    }

    /// Bytes of published frames this consumer has not read yet (the
    /// published `tail` less its own `head`), at most `cap`; a snapshot.
    pub(crate) fn unread_bytes(&self, r: &Region) -> u64 {
        // ORDERING: Acquire, as in `refresh_tail`; only a figure here.
        let tail = word(r, self.lay.tail).map_or(0, |w| w.load(Ordering::Acquire));
        tail.saturating_sub(self.head).min(self.lay.cap)
    }

    /// Re-read the published `tail`: frames before it need no wait, and a
    /// header before it that reads "not yet" is reported by the next look
    /// (a waiting consumer calls this at each peer check, so a zeroed header
    /// of a published frame is an error, not a wait forever).
    #[inline]
    pub(crate) fn refresh_tail(&mut self, r: &Region) -> Result<()> {
        // ORDERING: Acquire — pairs with the Release store of `tail` in
        // `ProducerCore::publish`: every frame before it is committed.
        let tail = word(r, self.lay.tail)?.load(Ordering::Acquire);
        if tail > self.head {
            if tail - self.head > self.lay.cap || tail % 8 != 0 {
                return Err(corrupted(format!(
                    "producer position {tail} is inconsistent with consumer position {}",
                    self.head
                )));
            }
            self.tail_cache = tail;
        }
        Ok(())
    }

    /// Prefetch the lines of up to [`PREFETCH_LINES`] ahead of `head`
    /// that lie before the cached `tail` (committed, so nobody writes them).
    #[inline]
    fn prefetch(&mut self, r: &Region) {
        // Whole lines only: the line holding `tail` may hold the start of
        // the frame the producer is writing now.
        let limit = (self.tail_cache & !(LINE - 1)).min(self.head + PREFETCH_LINES * LINE);
        let mut at = self.prefetched.max(self.head & !(LINE - 1));
        while at < limit {
            r.prefetch(self.lay.header_off(at));
            at += LINE;
        }
        self.prefetched = self.prefetched.max(at);
    }

    /// The next message: `(payload offset, len)`, or `None` if none is
    /// committed yet. Skips padding. For a consumer's first look: a frame
    /// found committed past the cached `tail` means the producer is ahead,
    /// so once the consumer has read [`REFRESH_BYTES`] that way it re-reads
    /// `tail`, and the frames before it get prefetched.
    #[inline]
    pub(crate) fn peek(&mut self, r: &Region) -> Result<Option<(usize, usize)>> {
        self.peek_inner(r, true)
    }

    /// [`peek`](Self::peek) for a fast path: `None` for "empty" and for any
    /// error alike (the caller's slow path looks again and reports it).
    /// Inlined whole so that the answer stays in registers: returned through
    /// memory, the `Result` cost a store-forwarding stall per message
    /// (measured with perf: 38 % of a same-core send+recv pair).
    #[inline(always)]
    pub(crate) fn peek_fast(&mut self, r: &Region) -> Option<(usize, usize)> {
        self.peek_inner(r, true).ok().flatten()
    }

    /// [`peek`](Self::peek) for the looks of a consumer that is waiting:
    /// it has caught up, the producer is writing the next frame, and
    /// `tail`'s line is left alone (the frame's own header line is the only
    /// one that moves per hand-off).
    #[inline]
    pub(crate) fn peek_waiting(&mut self, r: &Region) -> Result<Option<(usize, usize)>> {
        self.peek_inner(r, false)
    }

    #[inline(always)]
    fn peek_inner(&mut self, r: &Region, first: bool) -> Result<Option<(usize, usize)>> {
        let cap = self.lay.cap;
        // At most one padding frame precedes a message: padding never
        // starts at index 0.
        for _ in 0..2 {
            let known = self.head < self.tail_cache;
            if known {
                self.prefetch(r);
            }
            let idx = self.head & self.lay.mask();
            // ORDERING: Acquire — pairs with the Release store of the header
            // in `ProducerCore::publish`: the payload is complete.
            let h = word(r, self.lay.header_off(self.head))?.load(Ordering::Acquire);
            if h == 0 {
                if known {
                    return Err(corrupted(format!(
                        "frame at position {} reads \"not yet\" before the published tail {}",
                        self.head, self.tail_cache
                    )));
                }
                return Ok(None);
            }
            // The producer writes only within `cap` bytes of the `head` it
            // last read, which is at most what we last released: a frame
            // further on is an old lap's, seen through a hostile header
            // (and a batch that does not release would read on for ever).
            if self.head.wrapping_sub(self.released) >= cap {
                return Err(corrupted(format!(
                    "frame at position {} lies a capacity or more past the released position {}",
                    self.head, self.released
                )));
            }
            if !known && first && self.head - self.tail_cache >= REFRESH_BYTES {
                self.refresh_tail(r)?;
                self.prefetch(r);
            }
            let len = h & 0xffff_ffff;
            let kind = (h >> 32) as u32;
            match kind {
                KIND_DATA => {
                    if frame_len(len) > cap - idx || len > max_message(cap) {
                        return Err(corrupted(format!(
                            "frame at position {} claims {len} bytes; only {} fit",
                            self.head,
                            (cap - idx).min(max_message(cap) + FRAME_HEADER) - FRAME_HEADER
                        )));
                    }
                    let off = self.lay.header_off(self.head) + FRAME_HEADER as usize;
                    return Ok(Some((off, len as usize)));
                }
                KIND_PAD if idx != 0 && len == cap - idx - FRAME_HEADER => {
                    self.head += cap - idx;
                }
                _ => {
                    return Err(corrupted(format!(
                        "bad frame header {h:#018x} at position {}",
                        self.head
                    )))
                }
            }
        }
        Err(corrupted(format!(
            "two padding frames in a row at {}",
            self.head
        )))
    }

    /// Step past the message `peek` returned (`len` bytes).
    #[inline]
    pub(crate) fn advance(&mut self, len: usize) {
        self.head += frame_len(len as u64);
    }

    /// Store `head` so the producer can reuse the space, and wake it if it
    /// sleeps. Cheap when nothing was consumed.
    #[inline]
    pub(crate) fn release(&mut self, r: &Region) -> Result<()> {
        if self.head == self.released {
            return Ok(());
        }
        // ORDERING: Release — our reads of the consumed frames happen
        // before the producer's reuse; pairs with the Acquire load in
        // `ProducerCore::room`.
        word(r, self.lay.head)?.store(self.head, Ordering::Release);
        self.released = self.head;
        // No doorbell on the producer's side.
        let _ = wait::wake(r, self.lay.space_wait);
        Ok(())
    }

    /// The shared `head` must read what this consumer last stored there
    /// (nobody else writes it). A hostile writer that moved it back makes
    /// the ring look full to a producer that then waits for room while we
    /// wait for data, both alive, for ever: a waiting consumer calls this at
    /// each peer check, and the mismatch is an error.
    pub(crate) fn check_released(&self, r: &Region) -> Result<()> {
        // ORDERING: Relaxed — our own last store; nobody else's is expected.
        let head = word(r, self.lay.head)?.load(Ordering::Relaxed);
        if head != self.released {
            return Err(corrupted(format!(
                "consumer position word reads {head}, but the consumer released {}",
                self.released
            )));
        }
        Ok(())
    }

    /// Release once a quarter of the ring has been consumed since the last
    /// release (callers also release before they wait, and on drop).
    #[inline]
    pub(crate) fn release_lazily(&mut self, r: &Region) -> Result<()> {
        if self.head - self.released >= self.lay.cap / 4 {
            self.release(r)?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::error::Error;

    fn ring(cap: u64) -> (Region, ProducerCore, ConsumerCore) {
        let lay = Layout::packed(cap);
        (
            Region::heap(Layout::packed_size(cap)),
            ProducerCore::new(lay),
            ConsumerCore::new(lay),
        )
    }

    fn send(r: &Region, p: &mut ProducerCore, msg: &[u8]) -> bool {
        match p.reserve(r, msg.len() as u64).unwrap() {
            Some(off) => {
                r.write(off, msg).unwrap();
                p.commit(r, msg.len() as u64).unwrap();
                p.publish(r).unwrap();
                true
            }
            None => false,
        }
    }

    fn recv(r: &Region, c: &mut ConsumerCore) -> Option<Vec<u8>> {
        let (off, len) = c.peek(r).unwrap()?;
        let mut v = vec![0; len];
        r.read(off, &mut v).unwrap();
        c.advance(len);
        c.release(r).unwrap();
        Some(v)
    }

    /// Send into a ring the consumer has drained: may take two tries, the
    /// first publishing padding alone, which the consumer must skip.
    fn send_into_drained(
        r: &Region,
        p: &mut ProducerCore,
        c: &mut ConsumerCore,
        msg: &[u8],
    ) -> bool {
        send(r, p, msg) || {
            assert!(c.peek(r).unwrap().is_none());
            c.release(r).unwrap();
            send(r, p, msg)
        }
    }

    #[test]
    fn consumer_sees_frame_only_after_publish() {
        let (r, mut p, mut c) = ring(64);
        let off = p.reserve(&r, 5).unwrap().unwrap();
        r.write(off, b"hello").unwrap();
        p.commit(&r, 5).unwrap();
        assert!(c.peek(&r).unwrap().is_none(), "committed but unpublished");
        p.publish(&r).unwrap();
        assert_eq!(recv(&r, &mut c).unwrap(), b"hello");
        assert!(recv(&r, &mut c).is_none());
    }

    #[test]
    fn wraps_with_padding_and_keeps_order() {
        let (r, mut p, mut c) = ring(64);
        for i in 0u8..200 {
            let msg = vec![i; (i % 25) as usize];
            assert!(send_into_drained(&r, &mut p, &mut c, &msg), "message {i}");
            assert_eq!(recv(&r, &mut c).unwrap(), msg);
        }
    }

    #[test]
    fn largest_message_fits_a_drained_ring_at_any_index_in_one_step() {
        let (r, mut p, mut c) = ring(64);
        let max = max_message(64) as usize;
        assert_eq!(max, 24);
        for shift in 0..20usize {
            let small = vec![1u8; shift];
            assert!(send(&r, &mut p, &small));
            assert_eq!(recv(&r, &mut c).unwrap(), small);
            let big = vec![7u8; max];
            assert!(
                send(&r, &mut p, &big),
                "shift {shift}: padding and frame fit at once"
            );
            assert_eq!(recv(&r, &mut c).unwrap(), big);
        }
    }

    #[test]
    fn full_ring_refuses_then_accepts_after_release() {
        let (r, mut p, mut c) = ring(64);
        // 16-byte frames: 3 fit (48 + 8 slack <= 64), the 4th does not.
        for i in 0..3u8 {
            assert!(send(&r, &mut p, &[i; 8]));
        }
        assert!(!send(&r, &mut p, &[9; 8]));
        assert_eq!(recv(&r, &mut c).unwrap(), [0; 8]);
        assert!(send(&r, &mut p, &[9; 8]));
    }

    #[test]
    fn hostile_header_is_an_error_not_a_slice() {
        let (r, _p, mut c) = ring(64);
        let lay = Layout::packed(64);
        let w = r.u64_at(lay.data).unwrap();
        for bad in [
            1000u64 | (KIND_DATA as u64) << 32, // longer than the ring
            32 | (KIND_DATA as u64) << 32,      // longer than max message
            8 | 7u64 << 32,                     // unknown kind
            56 | (KIND_PAD as u64) << 32,       // padding at index 0
        ] {
            w.store(bad, Ordering::Relaxed);
            assert!(
                matches!(c.peek(&r), Err(Error::Corrupted { .. })),
                "{bad:#x}"
            );
        }
    }

    /// Consume `REFRESH_BYTES` by headers, so that the next first look
    /// past the cached `tail` re-reads it.
    fn stream_to_refresh(r: &Region, p: &mut ProducerCore, c: &mut ConsumerCore) {
        while c.head < REFRESH_BYTES {
            assert!(send_into_drained(r, p, c, &[1; 24]));
            assert_eq!(recv(r, c).unwrap(), [1; 24]);
        }
    }

    #[test]
    fn hostile_tail_is_an_error_not_a_wait_or_a_slice() {
        let cap = 2 * REFRESH_BYTES;
        let lay = Layout::packed(cap);
        for bad in [1u64 << 40, 4 * cap, 12] {
            let (r, mut p, mut c) = ring(cap);
            stream_to_refresh(&r, &mut p, &mut c);
            assert!(send(&r, &mut p, &[2; 8]));
            let bad = if bad == 12 { c.head + 12 } else { bad };
            r.u64_at(lay.tail).unwrap().store(bad, Ordering::Relaxed);
            assert!(
                matches!(c.peek(&r), Err(Error::Corrupted { .. })),
                "tail {bad}"
            );
        }
        // A tail that claims a frame whose header reads "not yet".
        let (r, mut p, mut c) = ring(cap);
        stream_to_refresh(&r, &mut p, &mut c);
        assert!(send(&r, &mut p, &[2; 8]));
        let at = c.head;
        r.u64_at(lay.tail)
            .unwrap()
            .store(at + 48, Ordering::Relaxed);
        assert_eq!(recv(&r, &mut c).unwrap(), [2; 8]);
        assert!(matches!(c.peek(&r), Err(Error::Corrupted { .. })));
    }

    #[test]
    fn tail_is_a_hint_a_committed_header_is_enough() {
        let (r, mut p, mut c) = ring(64);
        assert!(send(&r, &mut p, b"abc"));
        // Undo the tail store, as if the producer had died between its
        // header and tail stores: the frame is still there.
        let lay = Layout::packed(64);
        r.u64_at(lay.tail).unwrap().store(0, Ordering::Relaxed);
        assert_eq!(c.peek(&r).unwrap().map(|m| m.1), Some(3));
        assert_eq!(c.peek_waiting(&r).unwrap().map(|m| m.1), Some(3));
    }

    #[test]
    fn a_lagging_consumer_learns_tail_and_reads_before_it() {
        let cap = 4 * REFRESH_BYTES;
        let (r, mut p, mut c) = ring(cap);
        stream_to_refresh(&r, &mut p, &mut c);
        for i in 0..20u8 {
            assert!(send(&r, &mut p, &[i; 8]));
        }
        assert_eq!(recv(&r, &mut c).unwrap(), [0; 8]);
        // The first look re-read `tail`: the other 19 frames are known.
        assert_eq!(c.tail_cache, p.tail);
        for i in 1..20u8 {
            assert_eq!(recv(&r, &mut c).unwrap(), [i; 8]);
        }
        assert!(c.peek(&r).unwrap().is_none());
    }

    #[test]
    fn hostile_head_is_an_error() {
        let (r, mut p, _c) = ring(64);
        let lay = Layout::packed(64);
        for _ in 0..3 {
            assert!(send(&r, &mut p, &[1; 8]));
        }
        r.u64_at(lay.head)
            .unwrap()
            .store(1 << 40, Ordering::Relaxed);
        assert!(matches!(p.reserve(&r, 8), Err(Error::Corrupted { .. })));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::wait::{Backoff, WaitStrategy};
    use loom::sync::Arc;

    const CAP: u64 = 32;

    fn producer_send(r: &Region, p: &mut ProducerCore, msg: &[u8]) {
        let mut b = Backoff::new(WaitStrategy::Adaptive);
        loop {
            if let Some(off) = p.reserve(r, msg.len() as u64).unwrap() {
                r.write(off, msg).unwrap();
                p.commit(r, msg.len() as u64).unwrap();
                p.publish(r).unwrap();
                return;
            }
            let lay = *p.layout();
            let seen = p.head_cache();
            let head = r.u64_at(lay.head).unwrap();
            // ORDERING: Acquire — as in ProducerCore::room.
            let mut ready = || head.load(Ordering::Acquire) != seen;
            b.snooze(r, lay.space_wait, None, &mut ready);
        }
    }

    /// `Some(msg)`, or `None` once the producer closed and all is drained.
    fn consumer_recv(r: &Region, c: &mut ConsumerCore) -> Option<Vec<u8>> {
        let mut b = Backoff::new(WaitStrategy::Adaptive);
        // As `Consumer::peek_until`: the first look may use `tail`, later
        // ones (after a wait) the header word at `head` only.
        let mut first = true;
        loop {
            let m = if first {
                c.peek(r).unwrap()
            } else {
                c.peek_waiting(r).unwrap()
            };
            first = false;
            if let Some((off, len)) = m {
                let mut v = vec![0; len];
                r.read(off, &mut v).unwrap();
                c.advance(len);
                c.release_lazily(r).unwrap();
                return Some(v);
            }
            c.release(r).unwrap();
            let lay = *c.layout();
            if closed_bits(r, &lay) & PRODUCER_CLOSED != 0 {
                if c.peek_waiting(r).unwrap().is_none() {
                    return None;
                }
                continue;
            }
            let h = r.u64_at(c.head_header_off()).unwrap();
            // ORDERING: Acquire — as in ConsumerCore::peek.
            let mut ready =
                || h.load(Ordering::Acquire) != 0 || closed_bits(r, &lay) & PRODUCER_CLOSED != 0;
            b.snooze(r, lay.data_wait, None, &mut ready);
        }
    }

    /// Three messages (the third wraps with padding) through a 32-byte ring,
    /// then close: the consumer gets them in order, intact, then the end.
    /// Checks the payload hand-off (loom's race detector on the bytes),
    /// both wait/wake directions and disconnect.
    #[test]
    fn publish_consume_wrap_and_close() {
        crate::sync::model("publish_consume_wrap_and_close", || {
            let lay = Layout::packed(CAP);
            let r = Arc::new(Region::heap(Layout::packed_size(CAP)));
            let r2 = r.clone();
            let prod = loom::thread::spawn(move || {
                let mut p = ProducerCore::new(lay);
                producer_send(&r2, &mut p, &[1; 8]);
                producer_send(&r2, &mut p, &[2; 4]);
                producer_send(&r2, &mut p, &[3; 8]);
                close(&r2, &lay, PRODUCER_CLOSED);
            });
            let mut c = ConsumerCore::new(lay);
            assert_eq!(consumer_recv(&r, &mut c).unwrap(), [1; 8]);
            assert_eq!(consumer_recv(&r, &mut c).unwrap(), [2; 4]);
            assert_eq!(consumer_recv(&r, &mut c).unwrap(), [3; 8]);
            assert_eq!(consumer_recv(&r, &mut c), None);
            prod.join().unwrap();
        });
    }

    /// Three frames in a ring that holds them all (and large enough that
    /// the consumer's lazy release, whose barrier would hide the bug, does
    /// not run between them): a consumer that finds
    /// the second committed on its first look re-reads `tail` (loom's
    /// `REFRESH_BYTES` is 16) and may then take the third as known, without
    /// waiting on its header. Fails (Corrupted, or a torn payload) if the
    /// Release store of `tail` in `publish` is weakened to Relaxed.
    #[test]
    fn frames_before_a_learned_tail_are_complete() {
        crate::sync::model("frames_before_a_learned_tail_are_complete", || {
            let lay = Layout::packed(256);
            let r = Arc::new(Region::heap(Layout::packed_size(256)));
            let r2 = r.clone();
            let prod = loom::thread::spawn(move || {
                let mut p = ProducerCore::new(lay);
                for i in 1..=3u8 {
                    producer_send(&r2, &mut p, &[i; 8]);
                }
            });
            let mut c = ConsumerCore::new(lay);
            for i in 1..=3u8 {
                assert_eq!(consumer_recv(&r, &mut c).unwrap(), [i; 8]);
            }
            prod.join().unwrap();
        });
    }

    /// A batch of two frames published with one Release: the consumer sees
    /// none or both (in order), never the second alone.
    #[test]
    fn batch_is_visible_all_at_once() {
        crate::sync::model("batch_is_visible_all_at_once", || {
            let lay = Layout::packed(64);
            let r = Arc::new(Region::heap(Layout::packed_size(64)));
            let r2 = r.clone();
            let prod = loom::thread::spawn(move || {
                let mut p = ProducerCore::new(lay);
                for m in [[5u8; 8], [6u8; 8]] {
                    let off = p.reserve(&r2, 8).unwrap().unwrap();
                    r2.write(off, &m).unwrap();
                    p.commit(&r2, 8).unwrap();
                }
                p.publish(&r2).unwrap();
            });
            let mut c = ConsumerCore::new(lay);
            if let Some((off, len)) = c.peek(&r).unwrap() {
                let mut v = [0u8; 8];
                r.read(off, &mut v).unwrap();
                assert_eq!((v, len), ([5; 8], 8));
                c.advance(len);
                let (off, _) = c
                    .peek(&r)
                    .unwrap()
                    .expect("second frame came with the first");
                r.read(off, &mut v).unwrap();
                assert_eq!(v, [6; 8]);
            }
            prod.join().unwrap();
        });
    }
}
