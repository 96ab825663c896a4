//! The `encoding` pipeline: probe, optional cut, optional dressing (watermark, credits), then
//! one ffmpeg command that decodes the source once and writes every HLS/MP4 rendition, the mp3
//! and the overview frames, then the thumbnails, the overview sprite, `overview.vtt`,
//! `livestream.m3u8` and `info_video.json`.
//!
//! Output names (stem `S` = [`paths::output_stem`] of the source name):
//! - `{H}p_S.m3u8` + `{H}p_S.ts`: single-file HLS (byte ranges), 2 s segments, VOD playlist;
//! - `{H}p_S.mp4` for rungs with `encode_mp4` (faststart);
//! - `audio_192k_S.mp3` when there is audio, `audio_192k_S.m4a` too for audio-only sources;
//! - video sources: `S_0.png`, `S_1.png`, `S_2.png` (25/50/75 %), `overview.png` +
//!   `overview.vtt`, `livestream.m3u8` (master playlist of the HLS renditions);
//! - always: `info_video.json`, `encoding.log`.
//!
//! Argument building is pure (the `*_args` functions), so the CPU and GPU command lines are
//! tested without running ffmpeg.
//!
//! - [`args`]: presets, codecs and output names every command shares.
//! - [`ladder`]: rungs, the `rendition` parameter, the ladder command, the master playlist.
//! - [`options`]: the parameters read once, the cut command.
//! - [`dressing`]: watermark and credits.
//! - [`overview`]: the overview sprite and the thumbnails.
//! - [`run`]: the pipeline itself.

pub mod args;
pub mod dressing;
pub mod ladder;
pub mod options;
pub mod overview;
pub mod run;

pub use args::Outputs;
pub use dressing::{dressing_args, parse_dressing, Credits, Dressing, DressingJob, Position};
pub use ladder::{
    audio_only_args, default_ladder, ladder_args, master_playlist, parse_rendition, scaled_width,
    select_ladder, Bitrate, LadderJob, Rung,
};
pub use options::{cut_args, parse_cut, Cut, EncodingOptions};
pub use overview::{overview_grid, sprite_args, thumbnail_args, thumbnail_times, OverviewGrid};
pub(crate) use run::encode;
pub use run::run;

/// Streams the tests of every encoding module (and the studio's) describe.
#[cfg(test)]
pub(crate) mod testing {
    use super::Rung;
    use crate::media::probe::{AudioStream, VideoStream};

    pub fn video(width: u32, height: u32) -> VideoStream {
        VideoStream {
            index: 0,
            codec: "h264".to_owned(),
            width,
            height,
            sample_aspect_ratio: (1, 1),
            frame_rate: Some(25.0),
        }
    }

    pub fn audio() -> AudioStream {
        AudioStream {
            index: 1,
            codec: "aac".to_owned(),
            channels: 2,
            sample_rate: 48000,
        }
    }

    pub fn heights(rungs: &[Rung]) -> Vec<u32> {
        rungs.iter().map(|r| r.height).collect()
    }
}
