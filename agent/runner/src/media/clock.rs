//! Time values: the `cut` parameter (`HH:MM:SS`), SMIL clock values (`1.5s`, `1500ms`,
//! `00:00:01.500`), and how we print times for ffmpeg and WebVTT.

/// Seconds from `HH:MM:SS`, `MM:SS` or `SS`, each with an optional `.fraction` (the `cut`
/// parameter). Minutes and seconds after the first field must be below 60. `None` when the text
/// is not such a time.
pub fn parse_hms(text: &str) -> Option<f64> {
    parse_clock(text.trim(), 3)
}

/// Seconds from a SMIL clock value: a full clock (`01:02:03.5`), a partial clock (`02:03.5`), or
/// a timecount with an optional metric (`1.5s`, `1500ms`, `2min`, `1h`, `90`; no metric means
/// seconds). `None` for anything else (negative values, `wallclock(...)`, `indefinite`).
pub fn parse_smil_clock(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.contains(':') {
        return parse_clock(text, 3);
    }
    // Longest suffixes first: "ms" must not be read as "m" + "s", "min" not as "mi" + "n".
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("min") {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        (text, 1.0)
    };
    parse_decimal(number.trim()).map(|n| n * scale)
}

/// `HH:MM:SS(.f)` with at most `max_fields` fields; fields after the first are below 60.
fn parse_clock(text: &str, max_fields: usize) -> Option<f64> {
    let fields: Vec<&str> = text.split(':').collect();
    if fields.is_empty() || fields.len() > max_fields {
        return None;
    }
    let (last, leading) = fields.split_last()?;
    let seconds = parse_decimal(last)?;
    if !leading.is_empty() && seconds >= 60.0 {
        return None;
    }
    let mut total = 0.0;
    for (i, field) in leading.iter().enumerate() {
        if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: f64 = field.parse().ok()?;
        // Only the first field (hours, or minutes of a partial clock) may exceed 59.
        if i > 0 && value >= 60.0 {
            return None;
        }
        total = total * 60.0 + value;
    }
    Some(total * 60.0 + seconds)
}

/// A non-negative decimal (`12`, `1.5`, `.5`); no sign, no exponent, no `inf`/`nan` (which
/// `f64::from_str` would accept).
fn parse_decimal(text: &str) -> Option<f64> {
    let mut dots = 0;
    let mut digits = 0;
    for b in text.bytes() {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            _ => return None,
        }
    }
    if digits == 0 || dots > 1 {
        return None;
    }
    text.parse().ok()
}

/// Seconds as ffmpeg reads them (`-ss 12.345`), millisecond precision.
pub fn ffmpeg_seconds(seconds: f64) -> String {
    format!("{:.3}", seconds.max(0.0))
}

/// `HH:MM:SS.mmm`, as WebVTT cues need it.
pub fn vtt_timestamp(seconds: f64) -> String {
    // Rounded to whole milliseconds; negative and NaN become 0.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total_ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let ms = total_ms % 1000;
    let s = (total_ms / 1000) % 60;
    let m = (total_ms / 60_000) % 60;
    let h = total_ms / 3_600_000;
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_times() {
        assert_eq!(parse_hms("00:00:05"), Some(5.0));
        assert_eq!(parse_hms("01:02:03"), Some(3723.0));
        assert_eq!(parse_hms("00:01:02.5"), Some(62.5));
        assert_eq!(parse_hms("02:03"), Some(123.0));
        assert_eq!(parse_hms("7.25"), Some(7.25));
        assert_eq!(parse_hms(" 00:00:01 "), Some(1.0));
        for bad in [
            "", "abc", "00:60:00", "00:00:60", "1:2:3:4", "-1", "00:-1:00", "1e3", "inf", "::",
            "00:00:", "1..2",
        ] {
            assert_eq!(parse_hms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn smil_clock_values() {
        assert_eq!(parse_smil_clock("1.5s"), Some(1.5));
        assert_eq!(parse_smil_clock("1500ms"), Some(1.5));
        assert_eq!(parse_smil_clock("00:00:01.500"), Some(1.5));
        assert_eq!(parse_smil_clock("01:30"), Some(90.0));
        assert_eq!(parse_smil_clock("2min"), Some(120.0));
        assert_eq!(parse_smil_clock("1h"), Some(3600.0));
        assert_eq!(parse_smil_clock("90"), Some(90.0));
        assert_eq!(parse_smil_clock(" 0ms "), Some(0.0));
        assert_eq!(parse_smil_clock("100:00:00"), Some(360_000.0));
        for bad in [
            "",
            "s",
            "ms",
            "-1s",
            "1.5 sec",
            "indefinite",
            "wallclock(2020-01-01T00:00:00Z)",
            "00:61",
            "1x",
        ] {
            assert_eq!(parse_smil_clock(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn printed_times() {
        assert_eq!(ffmpeg_seconds(1.5), "1.500");
        assert_eq!(ffmpeg_seconds(-3.0), "0.000");
        assert_eq!(vtt_timestamp(0.0), "00:00:00.000");
        assert_eq!(vtt_timestamp(3723.4567), "01:02:03.457");
        assert_eq!(vtt_timestamp(f64::NAN), "00:00:00.000");
    }
}
