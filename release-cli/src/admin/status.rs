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
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
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
    url.query_pairs_mut()
        .append_pair("limit", &args.limit.to_string());
    let (_, audit) = server.send("audit", server.client.get(url))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&audit)?);
    } else {
        print!("{}", format_audit(&audit));
    }
    Ok(())
}
