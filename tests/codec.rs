//! Typed messages: serde values (postcard) and plain-old-data values
//! through both rings, and messages that do not decode.

use proptest::prelude::*;
use ringway::{mpmc, spsc, Error, RecvError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Dish {
    SteamedBun { filling: String },
    Bones(u32),
    Swill,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    chef: u8,
    seq: u64,
    dish: Dish,
    notes: Vec<String>,
    tip: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
    id: u32,
    _pad: u32,
}

fn order() -> impl Strategy<Value = Order> {
    let dish = prop_oneof![
        ".{0,40}".prop_map(|filling| Dish::SteamedBun { filling }),
        any::<u32>().prop_map(Dish::Bones),
        Just(Dish::Swill),
    ];
    (
        any::<u8>(),
        any::<u64>(),
        dish,
        prop::collection::vec(".{0,12}", 0..4),
        any::<Option<i64>>(),
    )
        .prop_map(|(chef, seq, dish, notes, tip)| Order {
            chef,
            seq,
            dish,
            notes,
            tip,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn values_round_trip_through_both_rings(orders in prop::collection::vec(order(), 1..20)) {
        let (mut tx, mut rx) = spsc::channel(4096).unwrap();
        let mut qtx = mpmc::Sender::create_anonymous(32, 512).unwrap();
        let mut qrx = mpmc::Receiver::from_fd(qtx.segment_fd()).unwrap();
        for o in &orders {
            tx.try_send_value(o).unwrap();
            qtx.try_send_value(o).unwrap();
        }
        for o in &orders {
            prop_assert_eq!(&rx.try_recv_value::<Order>().unwrap(), o);
            prop_assert_eq!(&qrx.try_recv_value::<Order>().unwrap(), o);
        }
    }
}

#[test]
fn a_message_that_does_not_decode_stays_and_names_the_type() {
    let (mut tx, mut rx) = spsc::channel(256).unwrap();
    tx.send(&[2]).unwrap(); // not a bool
    match rx.try_recv_value::<bool>() {
        Err(RecvError::Failed(Error::Decode { type_name, .. })) => assert_eq!(type_name, "bool"),
        other => panic!("{other:?}"),
    }
    let mut buf = [0u8; 8];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 1, "the message stayed");
    assert_eq!(buf[0], 2);

    let mut q = mpmc::Sender::create_anonymous(4, 64).unwrap();
    let mut qr = mpmc::Receiver::from_fd(q.segment_fd()).unwrap();
    q.send(&[0xff; 3]).unwrap(); // a varint that never ends
    q.send_value(&7u16).unwrap();
    assert!(matches!(
        qr.try_recv_value::<Order>(),
        Err(RecvError::Failed(Error::Decode { .. }))
    ));
    assert_eq!(qr.try_recv(&mut buf).unwrap(), 3, "kept for this receiver");
    assert_eq!(qr.try_recv_value::<u16>().unwrap(), 7);
}

#[test]
fn pod_values_need_the_exact_size() {
    let (mut tx, mut rx) = spsc::channel(256).unwrap();
    let p = Point {
        x: 1.5,
        y: -2.0,
        id: 9,
        _pad: 0,
    };
    tx.send_pod(&p).unwrap();
    assert_eq!(rx.try_recv_pod::<Point>().unwrap(), p);
    tx.send(&[0; 7]).unwrap();
    assert!(matches!(
        rx.try_recv_pod::<Point>(),
        Err(RecvError::Failed(Error::Decode { .. }))
    ));
    let mut buf = [0u8; 32];
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 7, "the message stayed");

    let mut q = mpmc::Sender::create_anonymous(4, 64).unwrap();
    let mut qr = mpmc::Receiver::from_fd(q.segment_fd()).unwrap();
    q.send_pod(&p).unwrap();
    assert_eq!(qr.recv_pod::<Point>().unwrap(), p);
}

#[test]
fn a_value_too_large_for_the_ring_is_refused_with_the_maximum() {
    let (mut tx, _rx) = spsc::channel(64).unwrap();
    let big = vec![0u8; 100];
    assert!(matches!(
        tx.try_send_value(&big),
        Err(ringway::SendError::TooLarge { max: 24, .. })
    ));
}
