//! `status` (channels, the fleet by version, the last hour's failures) and `audit` (the audit
//! trail, newest first): tables by default, the server's JSON with `--json`.

use anyhow::Result;
use clap::Args;
use manifests::Timestamp;

use super::client::{Server, ServerArgs};
use super::output::{format_audit, format_status};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the server's JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// How many entries to show, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Only this channel's entries.
    #[arg(long)]
    channel: Option<String>,
    /// Only entries of this kind: promote, halt, resume, rollback, auto_halt, publish, root,
    /// resign, channel_create, channel_delete, worker_forget or report.
    #[arg(long)]
    kind: Option<String>,
    /// Only entries since then: a duration ago (`90m`, `2h`, `7d`) or an RFC 3339 UTC time
    /// (`2026-12-01T00:00:00Z`).
    #[arg(long, value_parser = parse_since)]
    since: Option<Timestamp>,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `--since`: a time, or a duration before now.
fn parse_since(text: &str) -> std::result::Result<Timestamp, String> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let ago = manifests::parse_duration_secs(text)
        .map_err(|e| format!("neither a duration nor an RFC 3339 UTC time: {e}"))?;
    Timestamp::from_unix(Timestamp::now().unix().saturating_sub(ago))
        .ok_or_else(|| format!("{text:?} reaches before 1970"))
}

pub fn status(args: StatusArgs) -> Result<()> {
    let server = Server::new(&args.server)?;
    let (_, status) = server.send(
        "status",
        server
            .client
            .get(server.endpoint(&["api", "admin", "status"])),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", format_status(&status, Timestamp::now()));
    }
    Ok(())
}

pub fn audit(args: AuditArgs) -> Result<()> {
    let server = Server::new(&args.server)?;
    let mut url = server.endpoint(&["api", "admin", "audit"]);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("limit", &args.limit.to_string());
        if let Some(channel) = &args.channel {
            query.append_pair("channel", channel);
        }
        if let Some(kind) = &args.kind {
            query.append_pair("kind", kind);
        }
        if let Some(since) = &args.since {
            query.append_pair("since", &since.to_string());
        }
    }
    let (_, audit) = server.send("audit", server.client.get(url))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&audit)?);
    } else {
        print!("{}", format_audit(&audit));
    }
    Ok(())
}
