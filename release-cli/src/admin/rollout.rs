//! `worker-release rollout plan`: a release rolled out wave by wave, advanced by the server on
//! time and health (`POST /api/admin/channels/<channel>/plan`). The server parses and checks
//! the plan, so this command and the API refuse the same things with the same words.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use manifests::Version;
use serde_json::json;

use super::channel::{channel_action, parse_channel};
use super::client::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Roll a published release out on a channel in waves, e.g.
    /// `--waves 5,10%@1h,50%@4h,100%@1d`: five workers by name, then 10 % of the channel held
    /// for an hour, 50 % for four hours, everyone for a day. Each wave opens once the previous
    /// one's workers all tried the release (passed probation, or failed), its soak has passed and
    /// no failure threshold fired; `worker-release status` shows where it stands.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel, e.g. canary or stable.
    #[arg(long, value_parser = parse_channel)]
    channel: String,
    /// The published release version.
    #[arg(long)]
    version: Version,
    /// The waves: numbers of workers (named, totals so far) first, then shares of the channel,
    /// each with an optional soak after `@` (s, m, h, d, w).
    #[arg(long)]
    waves: String,
    /// Most workers updating at once: a number, or a share of the channel (default 20%).
    #[arg(long)]
    max_in_flight: Option<String>,
    /// Daily window, UTC, in which waves open and workers are admitted: HH:MM-HH:MM.
    #[arg(long)]
    window: Option<String>,
    /// Why (kept in the audit trail; required with --override).
    #[arg(long)]
    reason: Option<String>,
    /// Plan even though the canary soak or failure-rate gate has not passed (stable).
    #[arg(long = "override", requires = "reason")]
    force: bool,
    /// Mark the update urgent.
    #[arg(long)]
    urgent: bool,
}

pub fn rollout(command: RolloutCommand) -> Result<()> {
    match command {
        RolloutCommand::Plan(args) => plan(args),
    }
}

fn plan(args: PlanArgs) -> Result<()> {
    let reason = args.reason.unwrap_or_default();
    if args.force && reason.trim().is_empty() {
        bail!("--override needs a non-empty --reason (it is kept in the audit trail)");
    }
    let body = json!({
        "version": args.version.to_string(),
        "waves": args.waves,
        "max_in_flight": args.max_in_flight,
        "window": args.window,
        "reason": reason,
        "override": args.force,
        "urgent": args.urgent,
    });
    let what = format!(
        "rollout plan {} {} ({})",
        args.channel, args.version, args.waves
    );
    channel_action(&args.server, &args.channel, "plan", &what, &body)
}
