//! Exact conversions of Debezium scalar encodings: decimal text, Connect `Decimal` bytes, base64, and the
//! Debezium time encodings. Pure functions over `&str`/integers that return a short static reason on failure;
//! the caller attaches the field name.

use chrono::{DateTime, NaiveDate};

/// 10^n for n in 0..=38 (i128 holds 10^38).
fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// Parses a decimal literal (`123.45`, `-0.50`, `+7`, `1e3`, `2.5E-1`) exactly and rescales it to `scale`.
///
/// Rejected rather than rounded: digits below the scale that are not zero (`1.005` at scale 2), magnitudes of
/// `precision` digits or more, `NaN`/`Infinity`, empty input, whitespace, and anything else that is not a
/// plain decimal literal.
pub(crate) fn parse_decimal(text: &str, precision: u8, scale: u8) -> Result<i128, &'static str> {
    const NOT_A_NUMBER: &str = "not a decimal number";
    let b = text.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };

    // Trailing zeros are held back in `pending_zeros` and turned into exponent at the end, so that
    // `mantissa` never ends in 0: then any scale-down of a non-zero mantissa must lose digits.
    let mut mantissa: i128 = 0;
    let mut pending_zeros: u32 = 0;
    let mut exponent: i64 = 0;
    let mut push = |d: u8, mantissa: &mut i128| -> Result<(), &'static str> {
        if d == 0 {
            pending_zeros += 1;
            return Ok(());
        }
        if *mantissa != 0 {
            let shift = pow10(pending_zeros + 1).ok_or("too many significant digits")?;
            *mantissa = mantissa
                .checked_mul(shift)
                .ok_or("too many significant digits")?;
        }
        pending_zeros = 0;
        *mantissa = mantissa
            .checked_add(i128::from(d))
            .ok_or("too many significant digits")?;
        Ok(())
    };

    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        push(b[i] - b'0', &mut mantissa)?;
        i += 1;
    }
    if i == int_start {
        return Err(NOT_A_NUMBER);
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            push(b[i] - b'0', &mut mantissa)?;
            exponent -= 1;
            i += 1;
        }
        if i == frac_start {
            return Err(NOT_A_NUMBER);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let exp_negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_start = i;
        let mut e: i64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            // Saturate: anything beyond this is out of range for i128 either way.
            e = (e * 10 + i64::from(b[i] - b'0')).min(1_000_000);
            i += 1;
        }
        if i == exp_start {
            return Err(NOT_A_NUMBER);
        }
        exponent += if exp_negative { -e } else { e };
    }
    if i != b.len() {
        return Err(NOT_A_NUMBER);
    }
    if mantissa == 0 {
        return Ok(0);
    }
    // pending_zeros is only non-zero here if the mantissa's last pushed digits were zeros.
    exponent += i64::from(pending_zeros);
    let shift = exponent + i64::from(scale);
    let unscaled = if shift < 0 {
        // The mantissa has no trailing zero, so dividing would drop a non-zero digit.
        return Err("more fractional digits than the column scale");
    } else {
        let factor = u32::try_from(shift)
            .ok()
            .and_then(pow10)
            .ok_or("exceeds the column precision")?;
        mantissa
            .checked_mul(factor)
            .ok_or("exceeds the column precision")?
    };
    check_precision(unscaled, precision)?;
    Ok(if negative { -unscaled } else { unscaled })
}

fn check_precision(unscaled: i128, precision: u8) -> Result<(), &'static str> {
    match pow10(u32::from(precision)) {
        Some(limit) if unscaled.unsigned_abs() >= limit.unsigned_abs() => {
            Err("exceeds the column precision")
        }
        _ => Ok(()),
    }
}

/// Decodes a Connect `Decimal` (big-endian two's-complement unscaled bytes at `from_scale`) and rescales it
/// exactly to `scale`.
pub(crate) fn decimal_from_bytes(
    bytes: &[u8],
    from_scale: u8,
    precision: u8,
    scale: u8,
) -> Result<i128, &'static str> {
    if bytes.is_empty() {
        return Err("empty decimal bytes");
    }
    if bytes.len() > 16 {
        return Err("exceeds the column precision");
    }
    let mut v: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for &byte in bytes {
        v = (v << 8) | i128::from(byte);
    }
    let v = if scale >= from_scale {
        let factor = pow10(u32::from(scale - from_scale)).ok_or("exceeds the column precision")?;
        v.checked_mul(factor)
            .ok_or("exceeds the column precision")?
    } else {
        let factor = pow10(u32::from(from_scale - scale))
            .ok_or("more fractional digits than the column scale")?;
        if v % factor != 0 {
            return Err("more fractional digits than the column scale");
        }
        v / factor
    };
    check_precision(v, precision)?;
    Ok(v)
}

/// Strict standard-alphabet base64 with padding, which is how Connect's JsonConverter writes `bytes`.
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>, &'static str> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let b = text.as_bytes();
    if !b.len().is_multiple_of(4) {
        return Err("base64 length is not a multiple of 4");
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (n, chunk) in b.chunks_exact(4).enumerate() {
        let last = n + 1 == b.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err("misplaced base64 padding");
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            acc = (acc << 6) | sextet(c).ok_or("invalid base64 character")?;
        }
        acc <<= 6 * pad as u32;
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

/// An ISO-8601 instant with offset (`io.debezium.time.ZonedTimestamp`, e.g. `2026-11-25T10:15:30.123456Z`)
/// to microseconds since the epoch. Sub-microsecond digits that are not zero are rejected, not truncated.
pub(crate) fn parse_zoned_timestamp(text: &str) -> Result<i64, &'static str> {
    let dt =
        DateTime::parse_from_rfc3339(text).map_err(|_| "not an ISO-8601 timestamp with offset")?;
    if dt.timestamp_subsec_nanos() % 1_000 != 0 {
        return Err("sub-microsecond precision would be lost");
    }
    Ok(dt.timestamp_micros())
}

/// `YYYY-MM-DD` to days since the epoch.
pub(crate) fn parse_date(text: &str) -> Result<i32, &'static str> {
    let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| "not a YYYY-MM-DD date")?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).ok_or("epoch")?;
    i32::try_from((d - epoch).num_days()).map_err(|_| "date out of range")
}

/// The integer encodings of an instant that Debezium/Connect use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpochUnit {
    Millis,
    Micros,
    Nanos,
}

/// An integer instant in `unit` to microseconds; nanoseconds must be whole microseconds.
pub(crate) fn epoch_to_micros(v: i64, unit: EpochUnit) -> Result<i64, &'static str> {
    match unit {
        EpochUnit::Micros => Ok(v),
        EpochUnit::Millis => v.checked_mul(1_000).ok_or("out of range"),
        EpochUnit::Nanos if v % 1_000 == 0 => Ok(v / 1_000),
        EpochUnit::Nanos => Err("sub-microsecond precision would be lost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_rescale_exactly() {
        fn d(s: &str) -> Result<i128, &'static str> {
            parse_decimal(s, 18, 2)
        }
        assert_eq!(d("123.45"), Ok(12345));
        assert_eq!(d("-0.50"), Ok(-50));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("-0"), Ok(0));
        assert_eq!(d("0.00"), Ok(0));
        assert_eq!(d("+7"), Ok(700));
        assert_eq!(d("7.1"), Ok(710));
        assert_eq!(d("1.500000"), Ok(150));
        assert_eq!(d("00012.30"), Ok(1230));
        assert_eq!(d("1e3"), Ok(100_000));
        assert_eq!(d("2.5E-1"), Ok(25));
        assert_eq!(d("1500e-3"), Ok(150));
        assert_eq!(d("0e999999999"), Ok(0));
        assert_eq!(d("9999999999999999.99"), Ok(999_999_999_999_999_999));
        assert_eq!(d("-9999999999999999.99"), Ok(-999_999_999_999_999_999));
        // Long runs of trailing zeros must not overflow the accumulator.
        assert_eq!(d(&format!("1.{}", "0".repeat(60))), Ok(100));
        assert_eq!(d(&format!("0.{}1e60", "0".repeat(58))), Ok(1000));
    }

    #[test]
    fn decimals_reject_loss_overflow_and_junk() {
        fn d(s: &str) -> Result<i128, &'static str> {
            parse_decimal(s, 18, 2)
        }
        let lost = Err("more fractional digits than the column scale");
        let over = Err("exceeds the column precision");
        assert_eq!(d("1.005"), lost);
        assert_eq!(d("0.001"), lost);
        assert_eq!(d("1e-3"), lost);
        assert_eq!(d("10000000000000000.00"), over);
        assert_eq!(d("1e16"), over);
        assert_eq!(d("1e999999999999"), over);
        assert_eq!(d(&"9".repeat(50)), Err("too many significant digits"));
        for junk in [
            "", "-", "+", ".5", "5.", "1e", "1e+", "NaN", "Infinity", " 1", "1 ", "1,5", "0x10",
            "AQID",
        ] {
            assert_eq!(d(junk), Err("not a decimal number"), "{junk:?}");
        }
    }

    #[test]
    fn decimal_bytes_two_complement() {
        // 12345 = 0x3039, -50 = 0xFFCE
        assert_eq!(decimal_from_bytes(&[0x30, 0x39], 2, 18, 2), Ok(12345));
        assert_eq!(decimal_from_bytes(&[0xFF, 0xCE], 2, 18, 2), Ok(-50));
        assert_eq!(decimal_from_bytes(&[0x05], 0, 18, 2), Ok(500));
        assert_eq!(
            decimal_from_bytes(&[0x30, 0x39], 3, 18, 2),
            Err("more fractional digits than the column scale")
        );
        assert_eq!(
            decimal_from_bytes(&[0x04, 0xD2], 3, 18, 2),
            Err("more fractional digits than the column scale")
        );
        assert_eq!(decimal_from_bytes(&[0x04, 0xB0], 3, 18, 2), Ok(120));
        assert_eq!(
            decimal_from_bytes(&[], 2, 18, 2),
            Err("empty decimal bytes")
        );
        assert_eq!(
            decimal_from_bytes(&[1; 17], 2, 18, 2),
            Err("exceeds the column precision")
        );
    }

    #[test]
    fn base64_strict() {
        assert_eq!(base64_decode(""), Ok(vec![]));
        assert_eq!(base64_decode("MDk="), Ok(vec![0x30, 0x39]));
        assert_eq!(base64_decode("AQID"), Ok(vec![1, 2, 3]));
        assert_eq!(base64_decode("/w=="), Ok(vec![0xFF]));
        assert_eq!(
            base64_decode("AQI"),
            Err("base64 length is not a multiple of 4")
        );
        assert_eq!(base64_decode("A=B="), Err("invalid base64 character"));
        assert_eq!(base64_decode("AQ==AQID"), Err("misplaced base64 padding"));
        assert_eq!(base64_decode("A==="), Err("misplaced base64 padding"));
        assert_eq!(base64_decode("AQ-_"), Err("invalid base64 character"));
    }

    #[test]
    fn time_encodings() {
        assert_eq!(
            parse_zoned_timestamp("2026-11-25T10:15:30.123456Z"),
            Ok(1_795_601_730_123_456)
        );
        assert_eq!(
            parse_zoned_timestamp("2026-11-25T10:15:31.5Z"),
            Ok(1_795_601_731_500_000)
        );
        assert_eq!(
            parse_zoned_timestamp("2026-11-25T11:15:30.123456+01:00"),
            Ok(1_795_601_730_123_456)
        );
        assert_eq!(parse_zoned_timestamp("1969-12-31T23:59:59.999999Z"), Ok(-1));
        assert_eq!(
            parse_zoned_timestamp("2026-11-25T10:15:30.123456789Z"),
            Err("sub-microsecond precision would be lost")
        );
        for bad in [
            "2026-11-25T10:15:30",
            "2026-11-25",
            "infinity",
            "",
            "2026-13-01T00:00:00Z",
        ] {
            assert_eq!(
                parse_zoned_timestamp(bad),
                Err("not an ISO-8601 timestamp with offset"),
                "{bad:?}"
            );
        }
        assert_eq!(parse_date("1990-05-17"), Ok(7441));
        assert_eq!(parse_date("1969-12-31"), Ok(-1));
        assert_eq!(parse_date("1990-02-30"), Err("not a YYYY-MM-DD date"));
        assert_eq!(
            epoch_to_micros(1_795_601_730_123, EpochUnit::Millis),
            Ok(1_795_601_730_123_000)
        );
        assert_eq!(epoch_to_micros(5, EpochUnit::Micros), Ok(5));
        assert_eq!(
            epoch_to_micros(1_795_601_730_123_456_000, EpochUnit::Nanos),
            Ok(1_795_601_730_123_456)
        );
        assert_eq!(epoch_to_micros(-3_000, EpochUnit::Nanos), Ok(-3));
        assert_eq!(
            epoch_to_micros(1_001, EpochUnit::Nanos),
            Err("sub-microsecond precision would be lost")
        );
        assert_eq!(
            epoch_to_micros(i64::MAX, EpochUnit::Millis),
            Err("out of range")
        );
    }
}
