//! Checked size arithmetic for constructor arguments: every `usize` a
//! caller passes is validated over its whole range, with no step that can
//! overflow (a wrapped `next_power_of_two` once turned `usize::MAX` slots
//! into a queue of capacity 0).

use crate::error::{Error, Result};

/// `n` rounded up to a power of two, at least `min`, or `InvalidArgument`
/// naming `what` if that is above `max`. `min` and `max` are powers of two.
pub(crate) fn pow2_in(what: &str, n: usize, min: u64, max: u64) -> Result<u64> {
    debug_assert!(min.is_power_of_two() && max.is_power_of_two() && min <= max);
    let n64 = u64::try_from(n).unwrap_or(u64::MAX);
    if n64 > max {
        return Err(Error::InvalidArgument(format!(
            "{what} {n} is larger than {max}"
        )));
    }
    // n64 <= max, a power of two: no overflow.
    Ok(n64.max(min).next_power_of_two())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_and_refuses_above_the_maximum_without_wrapping() {
        assert_eq!(pow2_in("x", 0, 2, 1 << 24).unwrap(), 2);
        assert_eq!(pow2_in("x", 3, 2, 1 << 24).unwrap(), 4);
        assert_eq!(pow2_in("x", 1 << 24, 2, 1 << 24).unwrap(), 1 << 24);
        for bad in [(1 << 24) + 1, usize::MAX, usize::MAX / 2 + 2, 1 << 63] {
            assert!(matches!(
                pow2_in("x", bad, 2, 1 << 24),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
}
