//! The heavy peers (cargo feature `peers`): ipc-channel, ipmpsc and
//! iceoryx2, driven the way their documentation shows, in the same T
//! workload as every other row: one producer process, one consumer
//! process, `n` messages checked one by one.
//!
//! The consumer is spawned and READY first (it creates the channel), then
//! the producer (which connects to it); both then wait for GO.

// The peers' drivers wait the way the peers' own examples do; none of this
// is ringway's protocol (which goes through `sync.rs`).
#![allow(clippy::disallowed_methods)]

use crate::child::{check_msg, fill, now_ns, wait_go_with, Args};
use std::time::Duration;

/// The consumer side: set up, announce READY (with what the producer
/// needs to connect), then receive and check `n` messages.
pub(crate) fn consume(a: &Args) -> Result<u64, String> {
    let (n, size) = (a.num("n"), a.num("size") as usize);
    let slots = a.num("slots") as usize;
    match a.get("transport") {
        "ipc-channel" => {
            let (server, name) =
                ipc_channel::ipc::IpcOneShotServer::<Vec<u8>>::new().map_err(|e| e.to_string())?;
            wait_go_with(&name);
            // The producer's first message is a hello sent while it set up.
            let (rx, hello) = server.accept().map_err(|e| format!("{e:?}"))?;
            if !hello.is_empty() {
                return Err("ipc-channel: expected the empty hello first".into());
            }
            for seq in 0..n {
                let m = rx.recv().map_err(|e| format!("{e:?}"))?;
                check_msg(&m, seq, size)?;
            }
        }
        "ipmpsc" => {
            let path = a.get("path");
            let buf = ipmpsc::SharedRingBuffer::create(path, ipmpsc_bytes(size, slots))
                .map_err(|e| format!("{e:?}"))?;
            let rx = ipmpsc::Receiver::new(buf);
            wait_go_with("");
            for seq in 0..n {
                let m: Vec<u8> = rx.recv().map_err(|e| format!("{e:?}"))?;
                check_msg(&m, seq, size)?;
            }
            let _ = std::fs::remove_file(path);
        }
        "iceoryx2" if size == 64 => iox_consume::<64>(a.get("service"), n, slots)?,
        "iceoryx2" if size == 8 => iox_consume::<8>(a.get("service"), n, slots)?,
        other => return Err(format!("peer {other} at size {size}: not supported")),
    }
    Ok(now_ns())
}

/// The producer side: connect, announce READY, wait for GO, send `n`
/// messages; returns the start time.
pub(crate) fn produce(a: &Args) -> Result<u64, String> {
    let (n, size) = (a.num("n"), a.num("size") as usize);
    let mut msg = vec![0u8; size];
    let t0;
    match a.get("transport") {
        "ipc-channel" => {
            let tx = ipc_channel::ipc::IpcSender::<Vec<u8>>::connect(a.get("server").to_owned())
                .map_err(|e| e.to_string())?;
            tx.send(Vec::new()).map_err(|e| format!("{e:?}"))?;
            wait_go_with("");
            t0 = now_ns();
            for seq in 0..n {
                fill(&mut msg, seq);
                // The typed API takes the value by move: one Vec a message,
                // as a user of it writes.
                tx.send(msg.clone()).map_err(|e| format!("{e:?}"))?;
            }
        }
        "ipmpsc" => {
            let buf =
                ipmpsc::SharedRingBuffer::open(a.get("path")).map_err(|e| format!("{e:?}"))?;
            let tx = ipmpsc::Sender::new(buf);
            wait_go_with("");
            t0 = now_ns();
            for seq in 0..n {
                fill(&mut msg, seq);
                tx.send(&msg).map_err(|e| format!("{e:?}"))?;
            }
        }
        "iceoryx2" if size == 64 => {
            t0 = iox_produce::<64>(a.get("service"), n, a.num("slots") as usize)?
        }
        "iceoryx2" if size == 8 => {
            t0 = iox_produce::<8>(a.get("service"), n, a.num("slots") as usize)?
        }
        other => return Err(format!("peer {other} at size {size}: not supported")),
    }
    Ok(t0)
}

/// ipmpsc's ring for `slots` messages of `size` bytes (bincode adds an
/// 8-byte length; the ring an 8-byte header).
fn ipmpsc_bytes(size: usize, slots: usize) -> u32 {
    u32::try_from(slots * (size + 16)).unwrap_or(u32::MAX)
}

/// An iceoryx2 node and its publish-subscribe service of `[u8; N]`.
type IoxService<const N: usize> = (
    iceoryx2::node::Node<iceoryx2::service::ipc::Service>,
    iceoryx2::service::port_factory::publish_subscribe::PortFactory<
        iceoryx2::service::ipc::Service,
        [u8; N],
        (),
    >,
);

fn iox_service<const N: usize>(name: &str, slots: usize) -> Result<IoxService<N>, String> {
    use iceoryx2::prelude::*;
    // Its notices ("no config file was loaded") would land in the table.
    set_log_level(LogLevel::Error);
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(|e| format!("{e:?}"))?;
    let service = node
        .service_builder(&name.try_into().map_err(|e| format!("{e:?}"))?)
        .publish_subscribe::<[u8; N]>()
        // Lossless: a full subscriber makes the publisher wait (the
        // default overwrites the oldest sample).
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(slots)
        .history_size(0)
        .open_or_create()
        .map_err(|e| format!("{e:?}"))?;
    Ok((node, service))
}

fn iox_consume<const N: usize>(name: &str, n: u64, slots: usize) -> Result<(), String> {
    let (_node, service) = iox_service::<N>(name, slots)?;
    let sub = service
        .subscriber_builder()
        .buffer_size(slots)
        .create()
        .map_err(|e| format!("{e:?}"))?;
    wait_go_with("");
    let mut seq = 0;
    let mut idle = 0u32;
    while seq < n {
        match sub.receive().map_err(|e| format!("{e:?}"))? {
            Some(s) => {
                check_msg(&s[..], seq, N)?;
                seq += 1;
                idle = 0;
            }
            // iceoryx2's pub-sub has no blocking receive of its own (a
            // WaitSet and an event service would add one): busy-poll, as
            // its examples do in a loop, yielding now and then.
            None => {
                idle += 1;
                if idle % 64 == 0 {
                    std::thread::yield_now();
                }
            }
        }
    }
    Ok(())
}

fn iox_produce<const N: usize>(name: &str, n: u64, slots: usize) -> Result<u64, String> {
    use iceoryx2::prelude::*;
    let (_node, service) = iox_service::<N>(name, slots)?;
    let publisher = service
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(|e| format!("{e:?}"))?;
    wait_go_with("");
    let t0 = now_ns();
    let mut m = [0u8; N];
    // The publisher learns of the subscriber lazily: until it has, a sample
    // reaches nobody (`0` deliveries) and is sent again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for seq in 0..n {
        fill(&mut m, seq);
        while publisher.send_copy(m).map_err(|e| format!("{e:?}"))? == 0 {
            if std::time::Instant::now() > deadline {
                return Err("iceoryx2: the subscriber never connected".into());
            }
            std::thread::yield_now();
        }
    }
    Ok(t0)
}
