//! The channel commands: `promote`, `halt`, `resume` and `rollback`, each one POST to
//! `/api/admin/channels/<channel>/<action>` answered with the channel's summary.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use manifests::{Rollback, Signed, Timestamp, Version};
use serde_json::{json, Value};

use super::client::{Server, ServerArgs};
use super::output::{format_channels, format_waves};

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel to move, e.g. canary or stable.
    #[arg(long, value_parser = parse_channel)]
    channel: String,
    /// The published release version to point the channel at.
    #[arg(long)]
    version: Version,
    /// Rollout percentage (default 100; required on stable, where a promotion reaches the fleet).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    percent: Option<u8>,
    /// Why (kept in the audit trail; required with --override).
    #[arg(long)]
    reason: Option<String>,
    /// Promote even though the canary soak or failure-rate gate has not passed.
    #[arg(long = "override", requires = "reason")]
    force: bool,
    /// Minimum version agents must run (default: the server's choice).
    #[arg(long)]
    minimum_version: Option<Version>,
    /// Mark the update urgent.
    #[arg(long)]
    urgent: bool,
    /// Workers the release reaches first, by name in the signed statement; the rest of the
    /// share follows once they passed probation (0: the whole share at once). A channel whose
    /// cohort has no more known workers than this gets the share at once.
    #[arg(long, default_value_t = 5)]
    first_wave: u32,
    /// Most workers updating at once after the first wave: a number, or a share of the
    /// channel (`20%`, at least 1).
    #[arg(long, default_value = "20%")]
    max_in_flight: String,
}

#[derive(Debug, Args)]
pub struct HaltArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel to halt.
    #[arg(long, value_parser = parse_channel)]
    channel: String,
    /// Why (required; kept in the audit trail and shown in `status`).
    #[arg(long, value_parser = parse_non_empty)]
    reason: String,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel to resume (refused by the server unless it is halted).
    #[arg(long, value_parser = parse_channel)]
    channel: String,
    /// Why it is safe again (required; kept in the audit trail).
    #[arg(long, value_parser = parse_non_empty)]
    reason: String,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel to roll back.
    #[arg(long, value_parser = parse_channel)]
    channel: String,
    /// The signed rollback directive (from `worker-release sign-rollback`).
    #[arg(long)]
    directive: PathBuf,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: Option<String>,
}

pub fn promote(args: PromoteArgs) -> Result<()> {
    let reason = args.reason.unwrap_or_default();
    if args.force && reason.trim().is_empty() {
        bail!("--override needs a non-empty --reason (it is kept in the audit trail)");
    }
    if args.channel == "stable" && args.percent.is_none() {
        bail!(
            "promoting to stable needs --percent (e.g. --percent 10, or --percent 100 for the whole channel)"
        );
    }
    let body = json!({
        "version": args.version.to_string(),
        "percent": args.percent.unwrap_or(100),
        "reason": reason,
        "override": args.force,
        "minimum_version": args.minimum_version.map(|v| v.to_string()),
        "urgent": args.urgent,
        "first_wave": args.first_wave,
        "max_in_flight": args.max_in_flight,
    });
    let what = format!("promote {} {}", args.channel, args.version);
    channel_action(&args.server, &args.channel, "promote", &what, &body)
}

pub fn halt(args: HaltArgs) -> Result<()> {
    let what = format!("halt {}", args.channel);
    let body = json!({ "reason": args.reason });
    channel_action(&args.server, &args.channel, "halt", &what, &body)
}

pub fn resume(args: ResumeArgs) -> Result<()> {
    let what = format!("resume {}", args.channel);
    let body = json!({ "reason": args.reason });
    channel_action(&args.server, &args.channel, "resume", &what, &body)
}

pub fn rollback(args: RollbackArgs) -> Result<()> {
    let path = &args.directive;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc = Signed::<Rollback>::from_slice(&bytes)
        .with_context(|| format!("rollback directive {}", path.display()))?;
    let directive: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("rollback directive {}", path.display()))?;
    let what = format!("rollback {} to {}", args.channel, doc.signed.to);
    let body = json!({ "directive": directive, "reason": args.reason.unwrap_or_default() });
    channel_action(&args.server, &args.channel, "rollback", &what, &body)
}

/// POST /api/admin/channels/<channel>/<action>, then show the channel summary it answers with.
pub(super) fn channel_action(
    args: &ServerArgs,
    channel: &str,
    action: &str,
    what: &str,
    body: &Value,
) -> Result<()> {
    let server = Server::new(args)?;
    let url = server.endpoint(&["api", "admin", "channels", channel, action]);
    let (_, summary) = server.send(what, server.client.post(url).json(body))?;
    println!("{what}: done");
    print!(
        "{}",
        format_channels(std::slice::from_ref(&summary), Timestamp::now())
    );
    print!("{}", format_waves(std::slice::from_ref(&summary)));
    Ok(())
}

pub(super) fn parse_channel(text: &str) -> std::result::Result<String, String> {
    if text.is_empty() || text == "." || text == ".." || text.chars().any(char::is_control) {
        return Err(format!("{text:?} is not a channel name"));
    }
    Ok(text.to_owned())
}

fn parse_non_empty(text: &str) -> std::result::Result<String, String> {
    if text.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert!(parse_channel("..").is_err());
        assert!(parse_channel("").is_err());
        assert_eq!(parse_channel("stable").unwrap(), "stable");
    }
}
