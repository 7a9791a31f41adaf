//! Typed messages over any ring: serde values encoded with postcard, and
//! plain-old-data values (`#[repr(C)]`, `bytemuck::Pod`) copied as bytes.
//!
//! A serde value is measured first (postcard's `Size` flavor) and then
//! encoded straight into the claimed frame or slot: no intermediate `Vec`.
//! Decoding copies the value out of the ring, so the message is released
//! only once it decoded; a message that does not decode stays where it was
//! and the error names the type.

use crate::error::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bytes `v` takes encoded.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(v: &T) -> Result<usize, Error> {
    postcard::serialize_with_flavor(v, postcard::ser_flavors::Size::default())
        .map_err(|e| encode_err::<T>(e))
}

/// Encode `v` into `buf` (exactly [`encoded_len`] bytes long).
pub(crate) fn encode_into<T: Serialize + ?Sized>(v: &T, buf: &mut [u8]) -> Result<(), Error> {
    postcard::to_slice(v, buf)
        .map(drop)
        .map_err(|e| encode_err::<T>(e))
}

/// Decode a `T` from a whole message.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(Error::Decode {
            type_name: std::any::type_name::<T>(),
            detail: format!("{} bytes left over after the value", rest.len()),
        }),
        Err(e) => Err(Error::Decode {
            type_name: std::any::type_name::<T>(),
            detail: e.to_string(),
        }),
    }
}

/// Copy a plain-old-data `T` out of a message of exactly its size.
pub fn decode_pod<T: bytemuck::Pod>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.len() != std::mem::size_of::<T>() {
        return Err(Error::Decode {
            type_name: std::any::type_name::<T>(),
            detail: format!(
                "message of {} bytes, the type has {}",
                bytes.len(),
                std::mem::size_of::<T>()
            ),
        });
    }
    Ok(bytemuck::pod_read_unaligned(bytes))
}

fn encode_err<T: ?Sized>(e: postcard::Error) -> Error {
    Error::Encode {
        type_name: std::any::type_name::<T>(),
        detail: e.to_string(),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors_name_the_type() {
        let v = (7u32, String::from("bun"), vec![1i64, -2]);
        let mut buf = vec![0u8; encoded_len(&v).unwrap()];
        encode_into(&v, &mut buf).unwrap();
        assert_eq!(decode::<(u32, String, Vec<i64>)>(&buf).unwrap(), v);
        let e = decode::<bool>(&[2]).unwrap_err();
        assert!(e.to_string().contains("bool"), "{e}");
        let e = decode::<u8>(&[1, 2]).unwrap_err();
        assert!(e.to_string().contains("1 bytes left over"), "{e}");
        let e = decode_pod::<u64>(&[0; 7]).unwrap_err();
        assert!(
            e.to_string().contains("message of 7 bytes, the type has 8"),
            "{e}"
        );
        assert_eq!(decode_pod::<u32>(&7u32.to_ne_bytes()).unwrap(), 7);
    }
}
