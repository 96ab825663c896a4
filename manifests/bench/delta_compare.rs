//! Benchmark helper of `scripts/bench-update.sh` (an example target: built on demand, never
//! shipped): the patch from OLD to NEW made and applied one way, with its size, make and apply
//! times and this process's peak RSS.
//!
//!   cargo run --release -p manifests --example delta_compare -- zstd OLD NEW
//!   cargo run --release -p manifests --example delta_compare -- bsdiff OLD NEW
//!
//! `zstd` is what `worker-release sign-release --delta-from` and the agent run
//! (`manifests::make_patch` at `PATCH_LEVEL`, `manifests::apply_patch` streaming and verifying
//! the result against NEW's hash). `bsdiff` is the bsdiff 4.x format of the `qbsdiff` crate
//! (default settings), the usual alternative, applied in memory as that crate does. One method
//! per process so that the peak RSS (VmHWM) is that method's alone. Prints one line:
//! `method=... patch_bytes=... make_ms=... apply_ms=... peak_rss_kib=...`.

use std::error::Error;
use std::io::{BufReader, Cursor};
use std::time::Instant;

use sha2::{Digest, Sha256};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [method, old, new] = args.as_slice() else {
        return Err("usage: delta_compare zstd|bsdiff OLD NEW".into());
    };
    let base = std::fs::read(old)?;
    let target = std::fs::read(new)?;
    let target_sha256 = hex::encode(Sha256::digest(&target));
    let (patch, make_ms, apply_ms) = match method.as_str() {
        "zstd" => {
            let started = Instant::now();
            let mut patch = Vec::new();
            manifests::make_patch(
                &base,
                Cursor::new(&target),
                target.len() as u64,
                manifests::PATCH_LEVEL,
                &mut patch,
            )?;
            let make_ms = started.elapsed().as_millis();
            // The result as the agent checks it: against the signed size and hash.
            let result = manifests::Artifact {
                platform: manifests::BUILD_PLATFORM.to_owned(),
                sha256: target_sha256.clone(),
                size: target.len() as u64,
                url: String::new(),
                mirrors: Vec::new(),
                deltas: Vec::new(),
                extra: Default::default(),
            };
            let started = Instant::now();
            manifests::apply_patch(
                &base,
                BufReader::new(Cursor::new(&patch)),
                &result,
                std::io::sink(),
                &mut |_| {},
            )?;
            (patch, make_ms, started.elapsed().as_millis())
        }
        "bsdiff" => {
            let started = Instant::now();
            let mut patch = Vec::new();
            qbsdiff::Bsdiff::new(&base, &target).compare(Cursor::new(&mut patch))?;
            let make_ms = started.elapsed().as_millis();
            let started = Instant::now();
            let patcher = qbsdiff::Bspatch::new(&patch)?;
            let mut rebuilt = Vec::with_capacity(target.len());
            patcher.apply(&base, Cursor::new(&mut rebuilt))?;
            let apply_ms = started.elapsed().as_millis();
            if hex::encode(Sha256::digest(&rebuilt)) != target_sha256 {
                return Err("bsdiff: the patched result is not NEW".into());
            }
            (patch, make_ms, apply_ms)
        }
        other => return Err(format!("unknown method {other:?}: zstd or bsdiff").into()),
    };
    println!(
        "method={method} patch_bytes={} full_bytes={} make_ms={make_ms} apply_ms={apply_ms} peak_rss_kib={}",
        patch.len(),
        target.len(),
        peak_rss_kib()
    );
    Ok(())
}
