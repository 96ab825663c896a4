//! What ffprobe says about a media file, reduced to what the pipelines decide on.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::pipeline::TaskContext;
use crate::process::last_lines;

use super::display_name;

/// The first usable video stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoStream {
    /// Absolute stream index in the file (`-map 0:<index>`).
    pub index: usize,
    /// Codec name (`h264`, `vp8`, ...).
    pub codec: String,
    /// Stored width in pixels.
    pub width: u32,
    /// Stored height in pixels.
    pub height: u32,
    /// Sample aspect ratio (`num`, `den`); `(1, 1)` when unknown or `0:1`.
    pub sample_aspect_ratio: (u32, u32),
    /// Frame rate (average, else nominal), when ffprobe knows a plausible one.
    pub frame_rate: Option<f64>,
}

impl VideoStream {
    /// Display aspect ratio (width / height, with the sample aspect ratio applied).
    pub fn display_aspect(&self) -> f64 {
        let (num, den) = self.sample_aspect_ratio;
        (f64::from(self.width) * f64::from(num)) / (f64::from(self.height.max(1)) * f64::from(den))
    }

    /// The frame rate to normalise to: the probed one within 1..=60 fps, else 25 (browser
    /// recordings often report a container tick rate such as 1000 fps).
    pub fn usable_frame_rate(&self) -> f64 {
        match self.frame_rate {
            Some(rate) if (1.0..=60.0).contains(&rate) => rate,
            _ => 25.0,
        }
    }
}

/// The first audio stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioStream {
    /// Absolute stream index in the file.
    pub index: usize,
    /// Codec name.
    pub codec: String,
    /// Channel count (0 when unknown).
    pub channels: u32,
    /// Sample rate in Hz (0 when unknown).
    pub sample_rate: u32,
}

/// A probed media file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaInfo {
    /// Duration in seconds (> 0).
    pub duration: f64,
    /// Container format name as ffprobe prints it (`mov,mp4,m4a,3gp,3g2,mj2`).
    pub format_name: String,
    /// File size in bytes, when known.
    pub size: Option<u64>,
    /// Overall bit rate in bits/s, when known.
    pub bit_rate: Option<u64>,
    /// The first video stream that is not cover art.
    pub video: Option<VideoStream>,
    /// The first audio stream.
    pub audio: Option<AudioStream>,
}

#[derive(Debug, Deserialize)]
struct RawProbe {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Debug, Deserialize)]
struct RawStream {
    index: usize,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    sample_aspect_ratio: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    channels: Option<u32>,
    sample_rate: Option<String>,
    disposition: Option<RawDisposition>,
}

#[derive(Debug, Deserialize)]
struct RawDisposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Debug, Deserialize)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<String>,
    size: Option<String>,
    bit_rate: Option<String>,
}

/// `"30000/1001"` -> 29.97; `None` for `0/0` and garbage.
fn parse_rate(text: Option<&str>) -> Option<f64> {
    let (num, den) = text?.split_once('/')?;
    let num: f64 = num.trim().parse().ok()?;
    let den: f64 = den.trim().parse().ok()?;
    (num > 0.0 && den > 0.0).then(|| num / den)
}

/// `"16:15"` -> (16, 15); unknown or zero ratios are square pixels.
fn parse_sar(text: Option<&str>) -> (u32, u32) {
    text.and_then(|t| t.split_once(':'))
        .and_then(|(n, d)| Some((n.trim().parse().ok()?, d.trim().parse().ok()?)))
        .filter(|&(n, d): &(u32, u32)| n > 0 && d > 0)
        .unwrap_or((1, 1))
}

fn parse_seconds(text: Option<&str>) -> Option<f64> {
    text?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|d| d.is_finite() && *d > 0.0)
}

/// Reads `ffprobe -print_format json -show_format -show_streams` output. The error says what is
/// missing (for [`TaskError::BadInput`]).
pub fn parse_probe(json: &str) -> Result<MediaInfo, String> {
    let raw: RawProbe =
        serde_json::from_str(json).map_err(|e| format!("ffprobe printed unreadable JSON: {e}"))?;
    let video = raw
        .streams
        .iter()
        .filter(|s| s.codec_type.as_deref() == Some("video"))
        // Cover art of an mp3/m4a is a one-frame "video" stream: the file is still audio-only.
        .filter(|s| s.disposition.as_ref().is_none_or(|d| d.attached_pic == 0))
        .find(|s| s.width.unwrap_or(0) > 0 && s.height.unwrap_or(0) > 0)
        .map(|s| VideoStream {
            index: s.index,
            codec: s.codec_name.clone().unwrap_or_default(),
            width: s.width.unwrap_or(0),
            height: s.height.unwrap_or(0),
            sample_aspect_ratio: parse_sar(s.sample_aspect_ratio.as_deref()),
            frame_rate: parse_rate(s.avg_frame_rate.as_deref())
                .or_else(|| parse_rate(s.r_frame_rate.as_deref())),
        });
    let audio = raw
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("audio"))
        .map(|s| AudioStream {
            index: s.index,
            codec: s.codec_name.clone().unwrap_or_default(),
            channels: s.channels.unwrap_or(0),
            sample_rate: s
                .sample_rate
                .as_deref()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
        });
    if video.is_none() && audio.is_none() {
        return Err("it has no video and no audio stream".to_owned());
    }
    let format = raw.format;
    let duration = format
        .as_ref()
        .and_then(|f| parse_seconds(f.duration.as_deref()))
        .or_else(|| {
            raw.streams
                .iter()
                .filter_map(|s| parse_seconds(s.duration.as_deref()))
                .reduce(f64::max)
        })
        .ok_or_else(|| "ffprobe reports no duration for it".to_owned())?;
    Ok(MediaInfo {
        duration,
        format_name: format
            .as_ref()
            .and_then(|f| f.format_name.clone())
            .unwrap_or_default(),
        size: format
            .as_ref()
            .and_then(|f| f.size.as_deref()?.parse().ok()),
        bit_rate: format
            .as_ref()
            .and_then(|f| f.bit_rate.as_deref()?.parse().ok()),
        video,
        audio,
    })
}

/// Probes `path`. A file ffprobe cannot read, or one without video and audio, is
/// [`TaskError::BadInput`] naming `what` ("the source", "the opening credits", ...); stop and
/// timeout pass through.
pub async fn probe(ctx: &TaskContext, what: &str, path: &Path) -> Result<MediaInfo, TaskError> {
    let path_arg = path.as_os_str().to_owned();
    let args = [
        "-v".into(),
        "error".into(),
        "-print_format".into(),
        "json".into(),
        "-show_format".into(),
        "-show_streams".into(),
        path_arg,
    ];
    let output = match ctx
        .process
        .run("ffprobe", &ctx.media.ffprobe, &args, None)
        .await
    {
        Ok(output) => output,
        Err(TaskError::Failed(message)) => {
            return Err(TaskError::BadInput(format!(
                "{what} ({}) is not a media file ffprobe can read: {message}",
                display_name(path)
            )))
        }
        Err(other) => return Err(other),
    };
    parse_probe(&output.stdout).map_err(|reason| {
        let detail = last_lines(&output.stderr_tail, 3);
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        TaskError::BadInput(format!(
            "{what} ({}) is not usable media: {reason}{detail}",
            display_name(path)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_with_audio() {
        let json = r#"{"streams":[
            {"index":0,"codec_type":"video","codec_name":"h264","width":1280,"height":720,
             "sample_aspect_ratio":"1:1","avg_frame_rate":"25/1","r_frame_rate":"25/1",
             "disposition":{"attached_pic":0}},
            {"index":1,"codec_type":"audio","codec_name":"aac","channels":2,"sample_rate":"48000"}],
            "format":{"format_name":"mov,mp4","duration":"10.000000","size":"1234","bit_rate":"987"}}"#;
        let info = parse_probe(json).expect("parses");
        let video = info.video.expect("video");
        assert_eq!((video.index, video.width, video.height), (0, 1280, 720));
        assert_eq!(video.frame_rate, Some(25.0));
        assert_eq!(info.audio.expect("audio").channels, 2);
        assert_eq!(info.duration, 10.0);
        assert_eq!((info.size, info.bit_rate), (Some(1234), Some(987)));
    }

    #[test]
    fn cover_art_is_not_video_and_stream_duration_is_a_fallback() {
        let json = r#"{"streams":[
            {"index":0,"codec_type":"audio","codec_name":"mp3","duration":"4.5"},
            {"index":1,"codec_type":"video","codec_name":"mjpeg","width":500,"height":500,
             "disposition":{"attached_pic":1}}],
            "format":{"format_name":"mp3"}}"#;
        let info = parse_probe(json).expect("parses");
        assert!(info.video.is_none());
        assert_eq!(info.duration, 4.5);
    }

    #[test]
    fn refusals_say_why() {
        let none = r#"{"streams":[{"index":0,"codec_type":"data"}],"format":{"duration":"3"}}"#;
        assert!(parse_probe(none)
            .expect_err("no streams")
            .contains("no video and no audio"));
        let no_duration = r#"{"streams":[{"index":0,"codec_type":"audio"}],"format":{}}"#;
        assert!(parse_probe(no_duration)
            .expect_err("no duration")
            .contains("no duration"));
        assert!(parse_probe("not json")
            .expect_err("not JSON")
            .contains("JSON"));
    }

    #[test]
    fn anamorphic_aspect_and_odd_rates() {
        let video = VideoStream {
            index: 0,
            codec: "mpeg2video".into(),
            width: 720,
            height: 576,
            sample_aspect_ratio: parse_sar(Some("64:45")),
            frame_rate: parse_rate(Some("1000/1")),
        };
        assert!((video.display_aspect() - 16.0 / 9.0).abs() < 1e-9);
        assert_eq!(video.usable_frame_rate(), 25.0);
        assert_eq!(parse_sar(Some("0:1")), (1, 1));
        assert_eq!(parse_rate(Some("0/0")), None);
    }
}
