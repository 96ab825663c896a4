//! The overview sprite (`overview.png` + `overview.vtt`) and the three thumbnails.

use std::path::Path;

use serde::Serialize;

use crate::media::probe::VideoStream;
use crate::media::{clock, even_floor, even_round};

use super::args::{path_arg, strings, Outputs};

/// Thumbnails are posters: 720 lines are plenty and keep the PNGs small.
const THUMBNAIL_MAX_HEIGHT: u32 = 720;

/// Most frames in the overview sprite, and its columns.
const OVERVIEW_MAX_FRAMES: u32 = 100;

const OVERVIEW_COLUMNS: u32 = 10;

/// Width of one overview frame.
const OVERVIEW_CELL_WIDTH: u32 = 160;

/// The overview sprite: one frame every `interval_ms`, `count` frames in a grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OverviewGrid {
    /// Time between frames (ms), at least 1 s.
    pub interval_ms: u64,
    /// Frames (cues), at most 100.
    pub count: u32,
    /// Grid columns.
    pub columns: u32,
    /// Grid rows.
    pub rows: u32,
    /// Size of one frame.
    pub cell_width: u32,
    /// See `cell_width`.
    pub cell_height: u32,
}

/// The grid for a video of `duration` seconds: a frame per second, or 100 frames spread over
/// longer videos; frames 160 pixels wide with the display aspect ratio.
pub fn overview_grid(duration: f64, video: &VideoStream) -> OverviewGrid {
    // Durations are positive and far below u64 milliseconds.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total_ms = (duration.max(0.001) * 1000.0).ceil() as u64;
    let interval_ms = total_ms.div_ceil(u64::from(OVERVIEW_MAX_FRAMES)).max(1000);
    let count = u32::try_from(total_ms.div_ceil(interval_ms))
        .unwrap_or(OVERVIEW_MAX_FRAMES)
        .clamp(1, OVERVIEW_MAX_FRAMES);
    let columns = count.min(OVERVIEW_COLUMNS);
    OverviewGrid {
        interval_ms,
        count,
        columns,
        rows: count.div_ceil(columns),
        cell_width: OVERVIEW_CELL_WIDTH,
        cell_height: even_round(f64::from(OVERVIEW_CELL_WIDTH) / video.display_aspect()),
    }
}

impl OverviewGrid {
    /// The filter chain that picks and shrinks the overview frames from the decoded video.
    pub fn frames_filter(&self) -> String {
        format!(
            "fps=1000/{},scale={}:{},setsar=1",
            self.interval_ms, self.cell_width, self.cell_height
        )
    }

    /// The grid for the `count` frames actually written (the `fps` filter may stop one short
    /// of the planned count on a video that ends early).
    pub fn with_count(&self, count: u32) -> OverviewGrid {
        let count = count.clamp(1, OVERVIEW_MAX_FRAMES);
        let columns = count.min(OVERVIEW_COLUMNS);
        OverviewGrid {
            count,
            columns,
            rows: count.div_ceil(columns),
            ..*self
        }
    }

    /// `overview.vtt`: one cue per frame, pointing at its cell of `image`; the last cue runs to
    /// the end of the video.
    pub fn vtt(&self, duration: f64, image: &str) -> String {
        let mut vtt = String::from("WEBVTT\n");
        let interval = self.interval_ms as f64 / 1000.0;
        for i in 0..self.count {
            let start = f64::from(i) * interval;
            let end = if i + 1 == self.count {
                duration
            } else {
                (start + interval).min(duration)
            };
            if end <= start {
                break;
            }
            let x = (i % self.columns) * self.cell_width;
            let y = (i / self.columns) * self.cell_height;
            vtt.push_str(&format!(
                "\n{} --> {}\n{image}#xywh={x},{y},{},{}\n",
                clock::vtt_timestamp(start),
                clock::vtt_timestamp(end),
                self.cell_width,
                self.cell_height
            ));
        }
        vtt
    }
}

/// `ffmpeg` arguments that tile the overview frames (`pattern`, numbered from 1) into the
/// sprite.
pub fn sprite_args(grid: &OverviewGrid, pattern: &Path, output: &Path) -> Vec<String> {
    let mut args = strings(&["-hide_banner", "-nostdin", "-y", "-nostats"]);
    args.extend([
        "-framerate".to_owned(),
        "1".to_owned(),
        "-start_number".to_owned(),
        "1".to_owned(),
        "-i".to_owned(),
        path_arg(pattern),
        "-filter:v".to_owned(),
        format!("tile={}x{}", grid.columns, grid.rows),
        "-frames:v".to_owned(),
        "1".to_owned(),
        "-update".to_owned(),
        "1".to_owned(),
        path_arg(output),
    ]);
    args
}

/// Times of the three thumbnails: 25, 50 and 75 % of the duration.
pub fn thumbnail_times(duration: f64) -> [f64; 3] {
    [0.25, 0.5, 0.75].map(|f| duration * f)
}

/// `ffmpeg` arguments for the thumbnails: each one a fast seek (`-ss` before `-i` decodes from
/// the nearest keyframe only) and one frame, at the display aspect ratio, at most 720 high.
pub fn thumbnail_args(
    input: &Path,
    video: &VideoStream,
    duration: f64,
    outputs: &Outputs,
) -> Vec<String> {
    let mut args = strings(&["-hide_banner", "-nostdin", "-y", "-nostats"]);
    let times = thumbnail_times(duration);
    for time in times {
        args.extend([
            "-ss".to_owned(),
            clock::ffmpeg_seconds(time),
            "-i".to_owned(),
            path_arg(input),
        ]);
    }
    let height = even_floor(video.height.min(THUMBNAIL_MAX_HEIGHT));
    let width = even_round(f64::from(height) * video.display_aspect());
    for i in 0..times.len() {
        args.extend([
            "-map".to_owned(),
            format!("{i}:{}", video.index),
            "-frames:v".to_owned(),
            "1".to_owned(),
            "-filter:v".to_owned(),
            format!("scale={width}:{height},setsar=1"),
            "-update".to_owned(),
            "1".to_owned(),
            path_arg(&outputs.thumbnail(i)),
        ]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::ladder::{default_ladder, master_playlist, select_ladder, tee_escape};
    use crate::encoding::testing::video;
    use crate::media::testkit::flag_values as values;

    #[test]
    fn overview_grid_and_webvtt() {
        let grid = overview_grid(10.0, &video(1280, 720));
        assert_eq!(
            (grid.interval_ms, grid.count, grid.columns, grid.rows),
            (1000, 10, 10, 1)
        );
        assert_eq!((grid.cell_width, grid.cell_height), (160, 90));
        let long = overview_grid(3600.0, &video(640, 480));
        assert_eq!(
            (long.interval_ms, long.count, long.rows, long.cell_height),
            (36_000, 100, 10, 120)
        );
        let short = overview_grid(2.5, &video(1080, 1920));
        assert_eq!(
            (short.count, short.columns, short.rows, short.cell_height),
            (3, 3, 1, 284)
        );
        let vtt = short.vtt(2.5, "overview.png");
        // One frame short: the last cue runs to the end.
        let fewer = short.with_count(2);
        assert_eq!((fewer.columns, fewer.rows), (2, 1));
        assert!(fewer
            .vtt(2.5, "o.png")
            .ends_with("00:00:01.000 --> 00:00:02.500\no.png#xywh=160,0,160,284\n"));
        assert_eq!(
            vtt,
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\noverview.png#xywh=0,0,160,284\n\n00:00:01.000 --> 00:00:02.000\noverview.png#xywh=160,0,160,284\n\n00:00:02.000 --> 00:00:02.500\noverview.png#xywh=320,0,160,284\n"
        );
        let cues = long.vtt(3600.0, "overview.png");
        assert!(
            cues.contains("00:59:24.000 --> 01:00:00.000\noverview.png#xywh=1440,1080,160,120"),
            "{cues}"
        );
    }

    #[test]
    fn thumbnails_and_master_playlist() {
        let outputs = Outputs::new(Path::new("/o"), "s");
        let args = thumbnail_args(Path::new("/in.mp4"), &video(1920, 1080), 20.0, &outputs);
        assert_eq!(values(&args, "-ss"), ["5.000", "10.000", "15.000"]);
        assert_eq!(values(&args, "-map"), ["0:0", "1:0", "2:0"]);
        assert_eq!(values(&args, "-filter:v"), ["scale=1280:720,setsar=1"; 3]);
        assert!(args.ends_with(&["/o/s_2.png".to_owned()]));
        let rungs = select_ladder(&default_ladder(), &video(1280, 720));
        assert_eq!(
            master_playlist(&rungs, &video(1280, 720), true, "s"),
            "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-STREAM-INF:BANDWIDTH=1221000,AVERAGE-BANDWIDTH=846000,RESOLUTION=640x360\n360p_s.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=3128000,AVERAGE-BANDWIDTH=2128000,RESOLUTION=1280x720\n720p_s.m3u8\n"
        );
        assert_eq!(
            tee_escape(Path::new("/a|b/it's[1].mp4")),
            r"/a\|b/it\'s\[1\].mp4"
        );
    }
}
