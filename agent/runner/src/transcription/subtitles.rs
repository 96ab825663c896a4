//! Subtitle files from Whisper's segments: WebVTT (always) and SubRip (with `format`).

use std::fmt::Write as _;

use super::whisper::Segment;

/// A subtitle cue (milliseconds), shared by the WebVTT and SRT writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cue {
    start_ms: u64,
    end_ms: u64,
    text: String,
}

/// Segments to cues: text on one line with single spaces (a blank line would end the cue early),
/// empty segments dropped, and an end always after the start (both formats require it).
pub(super) fn cues(segments: &[Segment]) -> Vec<Cue> {
    segments
        .iter()
        .filter_map(|segment| {
            let text = segment
                .text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if text.is_empty() {
                return None;
            }
            let start_ms = to_millis(segment.start);
            let end_ms = to_millis(segment.end).max(start_ms + 1);
            Some(Cue {
                start_ms,
                end_ms,
                text,
            })
        })
        .collect()
}

fn to_millis(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        // Rounded to the millisecond both formats carry; far below u64::MAX for any media.
        (seconds * 1000.0).round() as u64
    } else {
        0
    }
}

/// `HH:MM:SS<separator>mmm` (hours grow past 99 if they must).
fn timestamp(ms: u64, separator: char) -> String {
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    format!("{hours:02}:{minutes:02}:{seconds:02}{separator}{millis:03}")
}

/// A WebVTT file: the `WEBVTT` header, then one cue per block. `&`, `<` and `>` are escaped,
/// which also keeps a `-->` in the text from reading as timings.
pub(super) fn webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for cue in cues {
        let text = cue
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let _ = write!(
            out,
            "{} --> {}\n{text}\n\n",
            timestamp(cue.start_ms, '.'),
            timestamp(cue.end_ms, '.')
        );
    }
    out
}

/// A SubRip file: cues numbered from 1, comma before the milliseconds.
pub(super) fn srt(cues: &[Cue]) -> String {
    let mut out = String::new();
    for (index, cue) in cues.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n\n",
            index + 1,
            timestamp(cue.start_ms, ','),
            timestamp(cue.end_ms, ','),
            cue.text.replace("-->", "->")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start: f64, end: f64, text: &str) -> Segment {
        Segment {
            start,
            end,
            text: text.to_owned(),
        }
    }

    #[test]
    fn timestamps_in_both_formats() {
        assert_eq!(timestamp(0, '.'), "00:00:00.000");
        assert_eq!(timestamp(3_661_500, '.'), "01:01:01.500");
        assert_eq!(timestamp(3_661_500, ','), "01:01:01,500");
        assert_eq!(timestamp(59_999, '.'), "00:00:59.999");
        assert_eq!(timestamp(360_000_000, '.'), "100:00:00.000");
        assert_eq!(to_millis(2.25), 2250);
        assert_eq!(to_millis(59.9996), 60_000);
        assert_eq!(timestamp(to_millis(59.9996), '.'), "00:01:00.000");
        assert_eq!(to_millis(-1.0), 0);
        assert_eq!(to_millis(f64::NAN), 0);
    }

    #[test]
    fn webvtt_has_a_header_timed_cues_and_escaped_text() {
        let cues = cues(&[
            segment(0.0, 2.5, " Hello   world. "),
            segment(2.5, 2.5, "Same start and end"),
            segment(3.0, 4.0, "   "),
            segment(4.0, 6.125, "Fish & <chips> --> now\nnext line"),
        ]);
        assert_eq!(cues.len(), 3, "the empty segment is dropped");
        assert_eq!(
            webvtt(&cues),
            "WEBVTT\n\n\
             00:00:00.000 --> 00:00:02.500\nHello world.\n\n\
             00:00:02.500 --> 00:00:02.501\nSame start and end\n\n\
             00:00:04.000 --> 00:00:06.125\nFish &amp; &lt;chips&gt; --&gt; now next line\n\n"
        );
        assert_eq!(webvtt(&[]), "WEBVTT\n\n");
    }

    #[test]
    fn srt_numbers_cues_from_one_with_comma_milliseconds() {
        let cues = cues(&[
            segment(0.0, 1.0, ""),
            segment(1.0, 3_723.004, "First --> cue"),
            segment(3_723.004, 3_725.0, "Second"),
        ]);
        assert_eq!(
            srt(&cues),
            "1\n00:00:01,000 --> 01:02:03,004\nFirst -> cue\n\n\
             2\n01:02:03,004 --> 01:02:05,000\nSecond\n\n"
        );
    }
}
