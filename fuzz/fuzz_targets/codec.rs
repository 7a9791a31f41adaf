//! Arbitrary bytes decoded as typed messages: a value or Error::Decode.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ringway::codec::decode::<(u32, String, Vec<i64>, Option<bool>)>(data);
    let _ = ringway::codec::decode::<Vec<(u8, char)>>(data);
    let _ = ringway::codec::decode_pod::<[u64; 4]>(data);
});
