//! The rendition ladder: bitrates, rungs, the `rendition` parameter, which rungs a source
//! gets, and the one ffmpeg command that writes every rendition (plus the mp3 and the overview
//! frames), the audio-only command and the master playlist.

use std::fmt;
use std::path::Path;

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::media::probe::{AudioStream, VideoStream};
use crate::media::{even_floor, even_round, ffmpeg_prelude};
use crate::pipeline::EncodingType;

use super::args::{path_arg, strings, Outputs, AUDIO_FILE_BITRATE, NVENC_PRESET, X264_PRESET};
use super::overview::OverviewGrid;

/// HLS segment length; keyframes are forced on this grid so segments cut cleanly.
const HLS_SEGMENT_SECONDS: u32 = 2;

/// A bit rate in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bitrate(u64);

impl Bitrate {
    /// `750k`, `2M`, `1.5M`, `96000`; between 1 kbit/s and 1 Gbit/s.
    pub fn parse(text: &str) -> Option<Bitrate> {
        let text = text.trim();
        let (number, scale) = match text.as_bytes().last()? {
            b'k' | b'K' => (&text[..text.len() - 1], 1e3),
            b'm' | b'M' => (&text[..text.len() - 1], 1e6),
            _ => (text, 1.0),
        };
        if number.is_empty()
            || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            || number.bytes().filter(|&b| b == b'.').count() > 1
        {
            return None;
        }
        let bits = number.parse::<f64>().ok()? * scale;
        // Checked against the range first, so the cast is exact enough.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (1e3..=1e9)
            .contains(&bits)
            .then(|| Bitrate(bits.round() as u64))
    }

    /// `kbps` kbit/s.
    pub const fn from_kbps(kbps: u64) -> Bitrate {
        Bitrate(kbps * 1000)
    }

    /// Bits per second.
    pub fn bits(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}k", self.0 / 1000)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for Bitrate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rung {
    /// Output height; the width follows the source's aspect ratio (`scale=-2:H`).
    pub height: u32,
    /// The nominal resolution (`640x360`), as configured.
    pub resolution: String,
    /// Target video bit rate.
    pub video_bitrate: Bitrate,
    /// Peak video bit rate (default 1.5 x the target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxrate: Option<Bitrate>,
    /// AAC bit rate.
    pub audio_bitrate: Bitrate,
    /// Whether an MP4 is written next to the HLS rendition.
    pub encode_mp4: bool,
}

impl Rung {
    fn new(height: u32, width: u32, video_kbps: u64, audio_kbps: u64, encode_mp4: bool) -> Rung {
        Rung {
            height,
            resolution: format!("{width}x{height}"),
            video_bitrate: Bitrate::from_kbps(video_kbps),
            maxrate: None,
            audio_bitrate: Bitrate::from_kbps(audio_kbps),
            encode_mp4,
        }
    }

    /// The peak rate (`-maxrate`).
    pub fn peak(&self) -> Bitrate {
        self.maxrate
            .unwrap_or(Bitrate(self.video_bitrate.0.saturating_mul(3) / 2))
    }
}

/// The ladder when the task has no `rendition` parameter.
pub fn default_ladder() -> Vec<Rung> {
    vec![
        Rung::new(360, 640, 750, 96, true),
        Rung::new(720, 1280, 2000, 128, true),
        Rung::new(1080, 1920, 3000, 192, false),
    ]
}

/// Reads the `rendition` parameter: an object keyed by height
/// (`{"360":{"resolution":"640x360","video_bitrate":"750k","audio_bitrate":"96k","encode_mp4":true}}`).
/// `video_bitrate` and `audio_bitrate` are required; `resolution` (its height must be the key),
/// `maxrate` and `encode_mp4` (default false) are optional; other keys (Pod sends `sites`,
/// `minrate`, ...) are ignored. Sorted by height.
pub fn parse_rendition(value: &Value) -> Result<Vec<Rung>, String> {
    let object = value
        .as_object()
        .ok_or("expected an object keyed by height, like {\"360\": {...}}")?;
    if object.is_empty() {
        return Err("no rendition given".to_owned());
    }
    let mut rungs: Vec<Rung> = Vec::new();
    for (key, spec) in object {
        let height: u32 = key
            .trim()
            .parse()
            .ok()
            .filter(|h| (16..=4320).contains(h))
            .ok_or_else(|| format!("key {key:?} is not a height between 16 and 4320"))?;
        if height % 2 == 1 {
            return Err(format!(
                "height {height} is odd (H.264 4:2:0 needs even sizes)"
            ));
        }
        if rungs.iter().any(|r| r.height == height) {
            return Err(format!("height {height} is given twice"));
        }
        let spec = spec
            .as_object()
            .ok_or_else(|| format!("{key:?}: expected an object, got {spec}"))?;
        let text = |field: &str| -> Option<String> {
            match spec.get(field)? {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let bitrate = |field: &str| -> Result<Option<Bitrate>, String> {
            text(field)
                .map(|t| {
                    Bitrate::parse(&t).ok_or_else(|| {
                        format!("{key:?}: {field} {t:?} is not a bit rate like 750k or 2M")
                    })
                })
                .transpose()
        };
        let required = |field: &str| -> Result<Bitrate, String> {
            bitrate(field)?.ok_or_else(|| format!("{key:?}: {field} is missing"))
        };
        let resolution = match text("resolution") {
            Some(r) => {
                let (w, h) = r
                    .split_once(['x', 'X'])
                    .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                    .filter(|&(w, h)| w > 0 && h > 0)
                    .ok_or_else(|| {
                        format!("{key:?}: resolution {r:?} is not WIDTHxHEIGHT like 640x360")
                    })?;
                if h != height {
                    return Err(format!(
                        "{key:?}: resolution {r:?} does not have height {height}"
                    ));
                }
                format!("{w}x{h}")
            }
            None => format!("{}x{height}", even_round(f64::from(height) * 16.0 / 9.0)),
        };
        let encode_mp4 = match spec.get("encode_mp4") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") || s == "1" => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") || s == "0" => false,
            Some(Value::Number(n)) if n.as_u64() == Some(1) => true,
            Some(Value::Number(n)) if n.as_u64() == Some(0) => false,
            Some(other) => return Err(format!("{key:?}: encode_mp4 {other} is not a boolean")),
        };
        rungs.push(Rung {
            height,
            resolution,
            video_bitrate: required("video_bitrate")?,
            maxrate: bitrate("maxrate")?,
            audio_bitrate: required("audio_bitrate")?,
            encode_mp4,
        });
    }
    rungs.sort_by_key(|r| r.height);
    Ok(rungs)
}

/// The width ffmpeg's `scale=-2:height` gives a `width`x`source_height` frame: the source width
/// scaled by the height ratio, rounded to the nearest even number.
pub fn scaled_width(width: u32, source_height: u32, height: u32) -> u32 {
    let (w, sh, h) = (
        u64::from(width),
        u64::from(source_height.max(1)),
        u64::from(height),
    );
    let halves = (h * w + sh) / (2 * sh);
    u32::try_from(halves * 2).unwrap_or(u32::MAX).max(2)
}

/// The rungs to encode for a source `video`: never upscale, so only rungs no taller than the
/// source; a source smaller than the smallest rung gets that rung's bit rates at its own (even)
/// height.
pub fn select_ladder(requested: &[Rung], video: &VideoStream) -> Vec<Rung> {
    let mut rungs = requested.to_vec();
    rungs.sort_by_key(|r| r.height);
    let fitting: Vec<Rung> = rungs
        .iter()
        .filter(|r| r.height <= video.height)
        .cloned()
        .collect();
    if !fitting.is_empty() {
        return fitting;
    }
    let Some(smallest) = rungs.first() else {
        return Vec::new();
    };
    let height = even_floor(video.height);
    vec![Rung {
        height,
        resolution: format!(
            "{}x{height}",
            scaled_width(video.width, video.height, height)
        ),
        ..smallest.clone()
    }]
}

/// Escapes a file name for the `tee` muxer's slave list (`|` separates slaves, `\` and `'`
/// quote, brackets open options).
pub(super) fn tee_escape(path: &Path) -> String {
    let mut escaped = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '\\' | '\'' | '|' | '[' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Everything the ladder command needs.
#[derive(Debug, Clone, Copy)]
pub struct LadderJob<'a> {
    /// Input file.
    pub input: &'a Path,
    /// Its video stream.
    pub video: &'a VideoStream,
    /// Its audio stream, if any.
    pub audio: Option<&'a AudioStream>,
    /// Rungs to encode (already selected: no upscaling).
    pub rungs: &'a [Rung],
    /// Where outputs go.
    pub outputs: &'a Outputs,
    /// The overview frames, taken from the same decode, and where they go (a `%03d.png`
    /// pattern).
    pub overview: Option<(&'a OverviewGrid, &'a Path)>,
    /// CPU or GPU.
    pub encoding: EncodingType,
}

/// `ffmpeg` arguments of the ladder: one decode split into every rung (and the overview
/// sprite); each rung encoded once, written as HLS and, with `encode_mp4`, also as MP4 through
/// the `tee` muxer; the mp3 from the same audio decode.
pub fn ladder_args(job: &LadderJob<'_>) -> Vec<String> {
    let gpu = job.encoding == EncodingType::Gpu;
    let mut args = ffmpeg_prelude();
    if gpu {
        // Decode on the GPU and keep frames there for scale_cuda and NVENC.
        args.extend(strings(&[
            "-hwaccel",
            "cuda",
            "-hwaccel_output_format",
            "cuda",
        ]));
    }
    args.extend(["-i".to_owned(), path_arg(job.input)]);

    let branches = job.rungs.len() + usize::from(job.overview.is_some());
    let mut graph = format!("[0:{}]split={branches}", job.video.index);
    for i in 0..job.rungs.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    if job.overview.is_some() {
        graph.push_str("[s_ov]");
    }
    for (i, rung) in job.rungs.iter().enumerate() {
        let scaler = if gpu { "scale_cuda" } else { "scale" };
        graph.push_str(&format!(";[s{i}]{scaler}=-2:{}[v{i}]", rung.height));
    }
    if let Some((grid, _)) = job.overview {
        // The frames are scaled on the CPU: GPU frames come down first (8 or 10 bit).
        let download = if gpu {
            "hwdownload,format=nv12|p010le,"
        } else {
            ""
        };
        graph.push_str(&format!(";[s_ov]{download}{}[ov]", grid.frames_filter()));
    }
    args.extend(["-filter_complex".to_owned(), graph]);

    let keyframes = format!("expr:gte(t,n_forced*{HLS_SEGMENT_SECONDS})");
    let hls_time = HLS_SEGMENT_SECONDS.to_string();
    for (i, rung) in job.rungs.iter().enumerate() {
        args.extend(["-map".to_owned(), format!("[v{i}]")]);
        if let Some(audio) = job.audio {
            args.extend(["-map".to_owned(), format!("0:{}", audio.index)]);
        }
        let bitrate = rung.video_bitrate.bits().to_string();
        let peak = rung.peak().bits().to_string();
        let buffer = rung.video_bitrate.bits().saturating_mul(2).to_string();
        if gpu {
            args.extend(strings(&[
                "-c:v",
                "h264_nvenc",
                "-preset",
                NVENC_PRESET,
                "-tune",
                "hq",
                "-profile:v",
                "high",
                "-rc",
                "vbr",
                "-forced-idr",
                "1",
            ]));
        } else {
            args.extend(strings(&[
                "-c:v",
                "libx264",
                "-preset",
                X264_PRESET,
                "-profile:v",
                "high",
                "-pix_fmt",
                "yuv420p",
            ]));
        }
        args.extend([
            "-b:v".to_owned(),
            bitrate,
            "-maxrate".to_owned(),
            peak,
            "-bufsize".to_owned(),
            buffer,
            "-force_key_frames".to_owned(),
            keyframes.clone(),
        ]);
        if let Some(audio) = job.audio {
            let channels = audio.channels.clamp(1, 2);
            args.extend([
                "-c:a".to_owned(),
                "aac".to_owned(),
                "-b:a".to_owned(),
                rung.audio_bitrate.bits().to_string(),
                "-ac".to_owned(),
                channels.to_string(),
            ]);
        }
        let hls = job.outputs.hls(rung.height);
        if rung.encode_mp4 {
            // One encode, two muxers. The MP4 needs the codec headers out of band, which tee
            // cannot negotiate per slave; MPEG-TS repeats them in band anyway.
            args.extend(strings(&["-flags", "+global_header", "-f", "tee"]));
            args.push(format!(
                "[f=hls:hls_time={hls_time}:hls_playlist_type=vod:hls_flags=single_file]{}|[f=mp4:movflags=+faststart]{}",
                tee_escape(&hls),
                tee_escape(&job.outputs.mp4(rung.height))
            ));
        } else {
            args.extend([
                "-f".to_owned(),
                "hls".to_owned(),
                "-hls_time".to_owned(),
                hls_time.clone(),
                "-hls_playlist_type".to_owned(),
                "vod".to_owned(),
                "-hls_flags".to_owned(),
                "single_file".to_owned(),
                path_arg(&hls),
            ]);
        }
    }
    if let Some(audio) = job.audio {
        args.extend([
            "-map".to_owned(),
            format!("0:{}", audio.index),
            "-c:a".to_owned(),
            "libmp3lame".to_owned(),
            "-b:a".to_owned(),
            AUDIO_FILE_BITRATE.to_owned(),
            path_arg(&job.outputs.mp3()),
        ]);
    }
    if let Some((grid, pattern)) = job.overview {
        // Single frames, not the tiled sprite: ffmpeg prints its first progress report only
        // once every output has started, and a tile would start only at the very end. The
        // frame cap drops a spare frame the fps filter may emit at the end.
        args.extend([
            "-map".to_owned(),
            "[ov]".to_owned(),
            "-frames:v".to_owned(),
            grid.count.to_string(),
            path_arg(pattern),
        ]);
    }
    args
}

/// `ffmpeg` arguments for an audio-only source: the mp3 and the m4a.
pub fn audio_only_args(input: &Path, audio: &AudioStream, outputs: &Outputs) -> Vec<String> {
    let mut args = ffmpeg_prelude();
    let map = format!("0:{}", audio.index);
    args.extend(["-i".to_owned(), path_arg(input)]);
    args.extend([
        "-map".to_owned(),
        map.clone(),
        "-c:a".to_owned(),
        "libmp3lame".to_owned(),
        "-b:a".to_owned(),
        AUDIO_FILE_BITRATE.to_owned(),
        path_arg(&outputs.mp3()),
    ]);
    args.extend([
        "-map".to_owned(),
        map,
        "-c:a".to_owned(),
        "aac".to_owned(),
        "-b:a".to_owned(),
        AUDIO_FILE_BITRATE.to_owned(),
        "-movflags".to_owned(),
        "+faststart".to_owned(),
        path_arg(&outputs.m4a()),
    ]);
    args
}

/// `livestream.m3u8`: the HLS renditions, smallest first, with their peak bandwidth.
pub fn master_playlist(rungs: &[Rung], video: &VideoStream, has_audio: bool, stem: &str) -> String {
    let mut playlist = String::from("#EXTM3U\n#EXT-X-VERSION:4\n");
    for rung in rungs {
        let audio = if has_audio {
            rung.audio_bitrate.bits()
        } else {
            0
        };
        playlist.push_str(&format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{}\n{}p_{stem}.m3u8\n",
            rung.peak().bits() + audio,
            rung.video_bitrate.bits() + audio,
            scaled_width(video.width, video.height, rung.height),
            rung.height,
            rung.height
        ));
    }
    playlist
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::options::{cut_args, Cut};
    use crate::encoding::overview::{overview_grid, sprite_args};
    use crate::encoding::testing::{audio, heights, video};
    use crate::media::probe::MediaInfo;
    use crate::media::testkit::flag_values as values;
    use serde_json::json;
    use std::path::PathBuf;

    #[test]
    fn ladder_never_upscales() {
        let ladder = default_ladder();
        assert_eq!(
            heights(&select_ladder(&ladder, &video(1920, 1080))),
            [360, 720, 1080]
        );
        assert_eq!(
            heights(&select_ladder(&ladder, &video(1280, 720))),
            [360, 720]
        );
        assert_eq!(
            heights(&select_ladder(&ladder, &video(1778, 1000))),
            [360, 720]
        );
        // Smaller than the smallest rung: one rendition at the source height, 360's bit rates.
        let small = select_ladder(&ladder, &video(320, 240));
        assert_eq!(heights(&small), [240]);
        assert_eq!(small[0].resolution, "320x240");
        assert_eq!(small[0].video_bitrate, ladder[0].video_bitrate);
        assert!(small[0].encode_mp4);
        // Odd heights round down to even.
        assert_eq!(heights(&select_ladder(&ladder, &video(426, 239))), [238]);
        // 1080 is HLS only by default.
        assert!(!ladder[2].encode_mp4 && ladder[0].encode_mp4 && ladder[1].encode_mp4);
    }

    #[test]
    fn widths_follow_ffmpeg_minus_two() {
        assert_eq!(scaled_width(1280, 720, 360), 640);
        assert_eq!(scaled_width(1920, 1080, 720), 1280);
        assert_eq!(scaled_width(640, 480, 360), 480);
        assert_eq!(scaled_width(1080, 1920, 360), 202);
        assert_eq!(scaled_width(720, 576, 360), 450);
    }

    #[test]
    fn rendition_parameter() {
        let rungs = parse_rendition(&json!({
            "720": {"resolution": "1280x720", "video_bitrate": "2M", "audio_bitrate": "128k", "encode_mp4": "true", "sites": [1]},
            "360": {"resolution": "640x360", "video_bitrate": "750k", "maxrate": "1000k", "audio_bitrate": 96000, "encode_mp4": true}
        }))
        .expect("valid");
        assert_eq!(heights(&rungs), [360, 720]);
        assert_eq!(rungs[0].video_bitrate.bits(), 750_000);
        assert_eq!(rungs[0].peak().bits(), 1_000_000);
        assert_eq!(rungs[0].audio_bitrate.to_string(), "96k");
        assert_eq!(rungs[1].peak().bits(), 3_000_000);
        assert!(rungs[1].encode_mp4);
        let refusals = [
            (json!([1, 2]), "object keyed by height"),
            (json!({}), "no rendition"),
            (json!({"abc": {}}), "not a height"),
            (
                json!({"361": {"video_bitrate": "1M", "audio_bitrate": "96k"}}),
                "odd",
            ),
            (json!({"360": "fast"}), "expected an object"),
            (
                json!({"360": {"audio_bitrate": "96k"}}),
                "video_bitrate is missing",
            ),
            (
                json!({"360": {"video_bitrate": "lots", "audio_bitrate": "96k"}}),
                "not a bit rate",
            ),
            (
                json!({"360": {"resolution": "640x480", "video_bitrate": "1M", "audio_bitrate": "96k"}}),
                "does not have height 360",
            ),
            (
                json!({"360": {"resolution": "big", "video_bitrate": "1M", "audio_bitrate": "96k"}}),
                "WIDTHxHEIGHT",
            ),
            (
                json!({"360": {"video_bitrate": "1M", "audio_bitrate": "96k", "encode_mp4": "maybe"}}),
                "not a boolean",
            ),
        ];
        for (value, expected) in refusals {
            let error = parse_rendition(&value).expect_err("refused");
            assert!(error.contains(expected), "{value}: {error}");
        }
        assert_eq!(Bitrate::parse("1.5M"), Some(Bitrate(1_500_000)));
        for bad in ["", "k", "-1k", "1e6", "10", "2G", "1.2.3k"] {
            assert_eq!(Bitrate::parse(bad), None, "{bad:?}");
        }
    }

    fn ladder_job_args(encoding: EncodingType) -> Vec<String> {
        let outputs = Outputs::new(Path::new("/w/output"), "clip");
        let source = video(1920, 1080);
        let rungs = select_ladder(&default_ladder(), &source);
        let grid = overview_grid(60.0, &source);
        let pattern = PathBuf::from("/w/overview_frames/%03d.png");
        let audio = audio();
        ladder_args(&LadderJob {
            input: Path::new("/w/clip.mp4"),
            video: &source,
            audio: Some(&audio),
            rungs: &rungs,
            outputs: &outputs,
            overview: Some((&grid, &pattern)),
            encoding,
        })
    }

    #[test]
    fn cpu_ladder_is_one_decode_split_into_every_output() {
        let args = ladder_job_args(EncodingType::Cpu);
        assert_eq!(values(&args, "-i"), ["/w/clip.mp4"]);
        assert_eq!(
            values(&args, "-filter_complex"),
            ["[0:0]split=4[s0][s1][s2][s_ov];[s0]scale=-2:360[v0];[s1]scale=-2:720[v1];[s2]scale=-2:1080[v2];[s_ov]fps=1000/1000,scale=160:90,setsar=1[ov]"]
        );
        assert_eq!(values(&args, "-c:v"), ["libx264"; 3]);
        assert_eq!(values(&args, "-b:v"), ["750000", "2000000", "3000000"]);
        assert_eq!(values(&args, "-b:a"), ["96000", "128000", "192000", "192k"]);
        assert_eq!(
            values(&args, "-force_key_frames"),
            ["expr:gte(t,n_forced*2)"; 3]
        );
        // 360 and 720 go to HLS and MP4 from one encode; 1080 is HLS only.
        assert_eq!(values(&args, "-f"), ["tee", "tee", "hls"]);
        assert!(args.contains(&"[f=hls:hls_time=2:hls_playlist_type=vod:hls_flags=single_file]/w/output/360p_clip.m3u8|[f=mp4:movflags=+faststart]/w/output/360p_clip.mp4".to_owned()));
        assert!(args.contains(&"/w/output/1080p_clip.m3u8".to_owned()));
        assert_eq!(values(&args, "-hls_flags"), ["single_file"]);
        assert!(args.contains(&"/w/output/audio_192k_clip.mp3".to_owned()));
        // 60 overview frames, as files for the sprite step.
        assert!(args.ends_with(&[
            "-map".to_owned(),
            "[ov]".to_owned(),
            "-frames:v".to_owned(),
            "60".to_owned(),
            "/w/overview_frames/%03d.png".to_owned()
        ]));
        let sprite = sprite_args(
            &overview_grid(60.0, &video(1920, 1080)).with_count(59),
            Path::new("/w/f/%03d.png"),
            Path::new("/w/output/overview.png"),
        );
        assert_eq!(values(&sprite, "-filter:v"), ["tile=10x6"]);
        assert_eq!(values(&sprite, "-i"), ["/w/f/%03d.png"]);
        assert_eq!(
            sprite.last().map(String::as_str),
            Some("/w/output/overview.png")
        );
        assert!(!args
            .iter()
            .any(|a| a.contains("cuda") || a.contains("nvenc")));
        assert_eq!(&args[..6], ffmpeg_prelude().as_slice());
    }

    #[test]
    fn gpu_ladder_decodes_scales_and_encodes_on_the_gpu() {
        let args = ladder_job_args(EncodingType::Gpu);
        let input = args.iter().position(|a| a == "-i").expect("-i");
        assert_eq!(
            &args[input - 4..input],
            ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"]
        );
        let graph = values(&args, "-filter_complex")[0];
        assert!(graph.contains("[s0]scale_cuda=-2:360[v0]"), "{graph}");
        assert!(graph.contains("[s2]scale_cuda=-2:1080[v2]"), "{graph}");
        assert!(
            graph.contains("[s_ov]hwdownload,format=nv12|p010le,fps="),
            "{graph}"
        );
        assert!(!graph.contains("]scale=-2"), "{graph}");
        assert_eq!(values(&args, "-c:v"), ["h264_nvenc"; 3]);
        assert_eq!(values(&args, "-preset"), ["p4"; 3]);
        assert_eq!(values(&args, "-rc"), ["vbr"; 3]);
        assert_eq!(values(&args, "-forced-idr"), ["1"; 3]);
        assert!(!args.contains(&"libx264".to_owned()));
        // CUDA frames carry their own format: no -pix_fmt conversion on the encoders.
        assert!(values(&args, "-pix_fmt").is_empty());
        // Intermediates use NVENC too.
        let cut = cut_args(
            Path::new("/w/in.mp4"),
            &MediaInfo {
                duration: 10.0,
                format_name: "mp4".to_owned(),
                size: None,
                bit_rate: None,
                video: Some(video(1280, 720)),
                audio: None,
            },
            Cut {
                start: 1.0,
                end: 4.0,
            },
            Path::new("/w/cut.mkv"),
            EncodingType::Gpu,
        );
        assert_eq!(values(&cut, "-c:v"), ["h264_nvenc"]);
    }
}
