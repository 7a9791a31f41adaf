//! Who is attached to a segment, and whether they are still alive.
//!
//! Each attached handle owns one entry of the segment's peer table and holds
//! an OFD write lock (`F_OFD_SETLK`) on byte `slot` of the segment's file,
//! through its own open file description. The kernel drops that lock the
//! instant the owning process dies, however it dies, so `F_OFD_GETLK` tells a
//! dead peer from a live one without trusting pids (which are reused, and
//! differ across pid namespaces). The lock is the claim: a slot whose lock
//! somebody holds cannot be taken by anyone else.
//!
//! # Entry layout (64 bytes at `PEERS_OFF + 64 × slot`)
//!
//! | offset | field |
//! |---|---|
//! | 0 | `state` u32: 0 free, 1 active, 2 closed (detached cleanly), 3 dead (reaped) |
//! | 4 | `role` u32 (the kind's role code) |
//! | 8 | `pid` u32 (display only) |
//! | 16 | `attached_unix_ns` u64 (display only) |
//! | 24 | `claim` u64 (mpmc: first claimed position + 1, 0 for none) |
//! | 32 | `claim_len` u64 (mpmc: how many positions from there) |
//! | 40 | `parked` u32 (mpmc: nonzero while the handle is between claims, waiting or polling: its claim record is history, not a slot being written) |

use crate::error::{Error, Result};
use crate::header::{PEERS_OFF, PEER_ENTRY};
use crate::segment::Segment;
use crate::sync::Ordering;

/// Entry state: never used.
pub(crate) const FREE: u32 = 0;
/// Entry state: owned by a live handle (as far as memory says).
pub(crate) const ACTIVE: u32 = 1;
/// Entry state: its owner detached cleanly.
pub(crate) const CLOSED: u32 = 2;
/// Entry state: its owner died and was reaped.
pub(crate) const DEAD: u32 = 3;

/// What the table and the kernel say about one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Liveness {
    /// Nobody has attached yet.
    Vacant,
    /// Attached and alive.
    Alive,
    /// Detached cleanly.
    Closed,
    /// Its process died while attached (reaped or not yet).
    Dead,
}

fn entry_off(slot: u32) -> usize {
    PEERS_OFF + slot as usize * PEER_ENTRY
}

fn ofd_lock(
    seg: &Segment,
    slot: u32,
    cmd: libc::c_int,
    l_type: libc::c_short,
) -> std::io::Result<libc::flock> {
    crate::segment::ofd_lock(seg.lock_file(), cmd, l_type.into(), slot.into(), 1)
}

fn slot_state(seg: &Segment, slot: u32) -> Result<&crate::sync::AtomicU32> {
    seg.region()
        .u32_at(entry_off(slot))
        .ok_or_else(|| seg.corrupted(format!("peer slot {slot} out of bounds")))
}

/// The outcome of [`attach`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attach {
    /// The slot is ours.
    Attached,
    /// Another open file description holds it: a live peer owns it.
    InUse,
    /// Somebody owned it before (closed or died): slots are used once.
    UsedBefore,
}

/// Take `slot` for this handle.
pub(crate) fn attach(seg: &Segment, slot: u32, role: u32) -> Result<Attach> {
    if slot >= seg.header().peer_slots {
        return Err(seg.corrupted(format!("peer slot {slot} past the table")));
    }
    match ofd_lock(seg, slot, libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short) {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
            return Ok(Attach::InUse)
        }
        Err(source) => {
            return Err(Error::Io {
                op: "fcntl(F_OFD_SETLK)",
                segment: seg.name().to_owned(),
                source,
            })
        }
    }
    let state = slot_state(seg, slot)?;
    // ORDERING: Acquire — pairs with the Release stores of earlier owners.
    if state.load(Ordering::Acquire) != FREE {
        unlock(seg, slot);
        return Ok(Attach::UsedBefore);
    }
    write_identity(seg, slot, role);
    // ORDERING: Release — publishes role/pid for `inspect`; pairs with the
    // Acquire load in `liveness`.
    state.store(ACTIVE, Ordering::Release);
    Ok(Attach::Attached)
}

/// Take any free, closed or reaped slot for a handle of `role`: the
/// multi-peer kinds reuse slots. `Ok(None)` when the table is full. A slot
/// whose owner died stays taken until [`reap`] has recovered it.
pub(crate) fn attach_any(seg: &Segment, role: u32) -> Result<Option<u32>> {
    for slot in 0..seg.header().peer_slots {
        let state = slot_state(seg, slot)?;
        // ORDERING: Relaxed — a hint to skip busy slots; the lock decides.
        if !matches!(state.load(Ordering::Relaxed), FREE | CLOSED | DEAD) {
            continue;
        }
        match ofd_lock(seg, slot, libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
                continue
            }
            Err(source) => {
                return Err(Error::Io {
                    op: "fcntl(F_OFD_SETLK)",
                    segment: seg.name().to_owned(),
                    source,
                })
            }
        }
        // ORDERING: Acquire — pairs with the Release stores of the slot's
        // earlier owner and reaper: its claim is settled (a DEAD slot is
        // one `reap` has recovered).
        if !matches!(state.load(Ordering::Acquire), FREE | CLOSED | DEAD) {
            unlock(seg, slot);
            continue;
        }
        write_identity(seg, slot, role);
        set_claim(seg, slot, 0)?;
        // ORDERING: Release — publishes role/pid; pairs with the Acquire
        // loads in `liveness` and `scan`.
        state.store(ACTIVE, Ordering::Release);
        return Ok(Some(slot));
    }
    Ok(None)
}

fn unlock(seg: &Segment, slot: u32) {
    let _ = ofd_lock(seg, slot, libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_short);
}

fn write_identity(seg: &Segment, slot: u32, role: u32) {
    let r = seg.region();
    let off = entry_off(slot);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // The lock makes these ours; they are display-only for everyone else.
    r.write(off + 4, &role.to_ne_bytes());
    // SAFETY: getpid has no preconditions.
    r.write(off + 8, &(unsafe { libc::getpid() } as u32).to_ne_bytes());
    r.write(off + 16, &now.to_ne_bytes());
}

/// The `claim` and `claim_len` words of `slot`: the positions its owner
/// is claiming or holds (`first + 1`, 0 for none; and how many).
pub(crate) fn claim_words(
    seg: &Segment,
    slot: u32,
) -> Result<(&crate::sync::AtomicU64, &crate::sync::AtomicU64)> {
    let r = seg.region();
    let off = entry_off(slot);
    match (r.u64_at(off + 24), r.u64_at(off + 32)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(seg.corrupted(format!("peer slot {slot} out of bounds"))),
    }
}

/// The entry's `parked` word (see the layout above).
pub(crate) fn parked_word(seg: &Segment, slot: u32) -> Result<&crate::sync::AtomicU32> {
    seg.region()
        .u32_at(entry_off(slot) + 40)
        .ok_or_else(|| seg.corrupted(format!("peer slot {slot} out of bounds")))
}

fn set_claim(seg: &Segment, slot: u32, v: u64) -> Result<()> {
    let (pos, len) = claim_words(seg, slot)?;
    // ORDERING: Relaxed — published by the Release store of ACTIVE.
    pos.store(v, Ordering::Relaxed);
    // ORDERING: Relaxed — as above.
    len.store(0, Ordering::Relaxed);
    // A reused entry may still say its last owner was parked; ours is not.
    // ORDERING: Relaxed — as above.
    parked_word(seg, slot)?.store(0, Ordering::Relaxed);
    Ok(())
}

/// The role recorded in `slot` (meaningful while it is ACTIVE).
pub(crate) fn role(seg: &Segment, slot: u32) -> u32 {
    let mut b = [0u8; 4];
    seg.region().read(entry_off(slot) + 4, &mut b);
    u32::from_ne_bytes(b)
}

/// The state word of `slot`, loaded with Acquire.
pub(crate) fn state(seg: &Segment, slot: u32) -> Result<u32> {
    // ORDERING: Acquire — pairs with the Release stores of attach/detach.
    Ok(slot_state(seg, slot)?.load(Ordering::Acquire))
}

/// If the owner of `slot` is dead, lock the slot, run `recover` (which
/// settles the dead owner's claim, and says whether it could), and once
/// settled mark it DEAD (reusable, and reported as a death) and return
/// `true`. `false` if it is alive, free, closed, reaped already, or not
/// settled yet (it stays ACTIVE for the next check).
pub(crate) fn reap(
    seg: &Segment,
    slot: u32,
    recover: &mut dyn FnMut(u32) -> Result<bool>,
) -> Result<bool> {
    let state = slot_state(seg, slot)?;
    // ORDERING: Acquire — as in `liveness`.
    if state.load(Ordering::Acquire) != ACTIVE {
        return Ok(false);
    }
    // Taking the lock proves the owner is gone, and keeps anyone from
    // attaching to the slot while we settle its claim.
    match ofd_lock(seg, slot, libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short) {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
            return Ok(false)
        }
        Err(source) => {
            return Err(Error::Io {
                op: "fcntl(F_OFD_SETLK)",
                segment: seg.name().to_owned(),
                source,
            })
        }
    }
    // ORDERING: Acquire — re-read under the lock: a clean detach stores
    // CLOSED before it unlocks.
    let res = if state.load(Ordering::Acquire) == ACTIVE {
        // Unsettled (a position it may hold was also covered by a live
        // claimer's record, perhaps only for an instant): it stays ACTIVE,
        // its record intact and its slot not reusable, for the next check.
        recover(slot).inspect(|&settled| {
            if settled {
                // ORDERING: Release — the claim is settled before the slot
                // is seen reusable; pairs with the Acquire in `attach_any`.
                state.store(DEAD, Ordering::Release);
            }
        })
    } else {
        Ok(false)
    };
    unlock(seg, slot);
    res
}

/// Give `slot` back: mark it closed, then drop the lock.
pub(crate) fn detach(seg: &Segment, slot: u32) {
    if let Ok(state) = slot_state(seg, slot) {
        // ORDERING: Release — a checker that sees CLOSED after our unlock
        // also sees everything this handle published before.
        state.store(CLOSED, Ordering::Release);
    }
    unlock(seg, slot);
}

/// Whether the owner of `slot` is alive. Never call it for a slot this
/// handle owns (our own lock does not conflict with us).
pub(crate) fn liveness(seg: &Segment, slot: u32) -> Result<Liveness> {
    let state = slot_state(seg, slot)?;
    // ORDERING: Acquire — pairs with the Release stores in attach/detach.
    match state.load(Ordering::Acquire) {
        FREE => return Ok(Liveness::Vacant),
        CLOSED => return Ok(Liveness::Closed),
        DEAD => return Ok(Liveness::Dead),
        ACTIVE => {}
        other => return Err(seg.corrupted(format!("peer slot {slot} has state {other}"))),
    }
    let fl = ofd_lock(seg, slot, libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short).map_err(
        |source| Error::Io {
            op: "fcntl(F_OFD_GETLK)",
            segment: seg.name().to_owned(),
            source,
        },
    )?;
    if fl.l_type != libc::F_UNLCK as libc::c_short {
        return Ok(Liveness::Alive);
    }
    // Nobody holds the lock. A clean detach stores CLOSED before unlocking,
    // so re-read: still ACTIVE means the owner died attached.
    // ORDERING: Acquire — as above.
    Ok(match state.load(Ordering::Acquire) {
        ACTIVE | DEAD => Liveness::Dead,
        CLOSED => Liveness::Closed,
        _ => Liveness::Vacant,
    })
}

/// Mark a dead slot reaped. `true` for the one caller that did it (so a
/// death is counted once).
pub(crate) fn mark_dead(seg: &Segment, slot: u32) -> Result<bool> {
    // ORDERING: AcqRel — one reaper wins; pairs with other reapers' CAS.
    Ok(slot_state(seg, slot)?
        .compare_exchange(ACTIVE, DEAD, Ordering::AcqRel, Ordering::Acquire)
        .is_ok())
}

/// The display-only `pid` and `attached_unix_ns` of `slot` (for
/// `inspect`; never trusted for anything).
pub(crate) fn display_fields(seg: &Segment, slot: u32) -> (u32, u64) {
    let (mut pid, mut at) = ([0u8; 4], [0u8; 8]);
    seg.region().read(entry_off(slot) + 8, &mut pid);
    seg.region().read(entry_off(slot) + 16, &mut at);
    (u32::from_ne_bytes(pid), u64::from_ne_bytes(at))
}
