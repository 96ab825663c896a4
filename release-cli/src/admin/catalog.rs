//! `channel create | list | delete`, and `worker forget`: which channels the update server serves. A channel must
//! be created before anything is promoted on it, so a typo (`--channel stabel`) is refused by
//! the server instead of opening a new channel.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use super::client::{Server, ServerArgs};
use super::output::format_channel_list;

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Create a channel, so that releases can be promoted on it and workers can follow it.
    Create(CreateArgs),
    /// List the channels: what each offers and how many workers follow it.
    List(ListArgs),
    /// Delete a channel (refused while workers follow it, unless --force).
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The new channel's name: 1-64 of a-z, 0-9, - and _.
    name: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel to delete.
    name: String,
    /// Delete it even though workers follow it: they are answered 404 `unknown_channel` until
    /// they are moved to another channel.
    #[arg(long)]
    force: bool,
}

pub fn channel(command: ChannelCommand) -> Result<()> {
    match command {
        ChannelCommand::Create(args) => {
            let server = Server::new(&args.server)?;
            let what = format!("channel create {}", args.name);
            let url = server.endpoint(&["api", "admin", "channels"]);
            server.send(
                &what,
                server.client.post(url).json(&json!({"name": args.name})),
            )?;
            println!("{what}: done");
        }
        ChannelCommand::List(args) => {
            let server = Server::new(&args.server)?;
            let url = server.endpoint(&["api", "admin", "channels"]);
            let (_, list) = server.send("channel list", server.client.get(url))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", format_channel_list(&list));
            }
        }
        ChannelCommand::Delete(args) => {
            let server = Server::new(&args.server)?;
            let what = format!("channel delete {}", args.name);
            let mut url = server.endpoint(&["api", "admin", "channels", &args.name]);
            if args.force {
                url.query_pairs_mut().append_pair("force", "true");
            }
            server.send(&what, server.client.delete(url))?;
            println!("{what}: done");
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Forget a decommissioned worker: it leaves the inventory and the fleet gauges (so its
    /// stale-worker alerts stop) and its enrolled credential is revoked; audited. With the
    /// shared worker token, a worker that polls again reappears; an enrolled one must enrol
    /// again with a new join token.
    Forget(ForgetArgs),
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The worker's id, as `worker-release status --json` lists it.
    id: String,
}

pub fn worker(command: WorkerCommand) -> Result<()> {
    let WorkerCommand::Forget(args) = command;
    let server = Server::new(&args.server)?;
    let what = format!("worker forget {}", args.id);
    let url = server.endpoint(&["api", "admin", "workers", &args.id]);
    server.send(&what, server.client.delete(url))?;
    println!("{what}: done");
    Ok(())
}
