//! Numbers written as ASCII decimal digits straight into an output buffer, the way the wire
//! formats here carry them: HTTP's `Content-Length` and `Date` (RFC 9110 §8.6, §5.6.7) and
//! RESP's counts and lengths. No `String` is made for a number and no `fmt` machinery runs: a
//! response head or a publish's command holds several, and `perf` found `format!` and
//! `write!` among a node's costs (README, "What the hop costs").

#![forbid(unsafe_code)]

/// Appends `value` in decimal, without leading zeros (`0` for zero).
pub fn push_decimal(out: &mut Vec<u8>, value: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Writes `value` into `out` with as many digits as `out` has room for, leading zeros
/// included (`07`): the fixed-width fields of a date. A value too large for the width keeps
/// its last digits; callers keep values in range.
pub fn write_padded(out: &mut [u8], value: u64) {
    let mut rest = value;
    for place in out.iter_mut().rev() {
        *place = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_its_decimal_digits_without_leading_zeros() {
        for value in [0, 7, 10, 99, 100, 12_345, 1 << 20, usize::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, value);
            assert_eq!(out, format!("x{value}").as_bytes());
        }
    }

    #[test]
    fn a_fixed_width_field_is_padded_with_zeros() {
        let mut field = *b"....";
        write_padded(&mut field[1..3], 7);
        assert_eq!(&field, b".07.");
        write_padded(&mut field, 2026);
        assert_eq!(&field, b"2026");
    }
}
