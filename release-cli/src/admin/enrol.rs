//! `enroll-token [list | revoke ID]`: join tokens, with which workers enrol once to get their
//! own credential (`WORKER_ENROLL_TOKEN_FILE` on the agent). The token is printed once: the
//! server keeps only its hash.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{Server, ServerArgs};

/// `worker-release enroll-token`: without a subcommand, make a join token.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EnrollTokenArgs {
    #[command(subcommand)]
    command: Option<EnrollTokenCommand>,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(Debug, Subcommand)]
pub enum EnrollTokenCommand {
    /// List the join tokens: id, channel, uses, expiry and state (never the tokens).
    List(ListArgs),
    /// Revoke a join token: no worker enrols with it any more (those it enrolled stay).
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    server: Option<ServerArgs>,
    /// The channel the workers it enrols must follow (default: any).
    #[arg(long)]
    channel: Option<String>,
    /// How many workers may enrol with it.
    #[arg(long, default_value_t = 1)]
    uses: u32,
    /// How long it stays valid (`30m`, `24h`, `7d`).
    #[arg(long, default_value = "24h")]
    expires: String,
    /// Print the server's JSON (with the token) instead of the token alone.
    #[arg(long)]
    json: bool,
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
pub struct RevokeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The join token's id (`worker-release enroll-token list`).
    id: String,
}

pub fn enroll_token(args: EnrollTokenArgs) -> Result<()> {
    match args.command {
        Some(EnrollTokenCommand::List(list)) => {
            let server = Server::new(&list.server)?;
            let url = server.endpoint(&["api", "admin", "enroll-tokens"]);
            let (_, answer) = server.send("enroll-token list", server.client.get(url))?;
            if list.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print!("{}", format_list(&answer));
            }
        }
        Some(EnrollTokenCommand::Revoke(revoke)) => {
            let server = Server::new(&revoke.server)?;
            let what = format!("enroll-token revoke {}", revoke.id);
            let url = server.endpoint(&["api", "admin", "enroll-tokens", &revoke.id]);
            server.send(&what, server.client.delete(url))?;
            println!("{what}: done");
        }
        None => create(args.create)?,
    }
    Ok(())
}

fn create(args: CreateArgs) -> Result<()> {
    let server_args = args
        .server
        .context("--server is required (the update server's admin API)")?;
    let expires = manifests::parse_duration_secs(&args.expires)
        .with_context(|| format!("--expires {:?}", args.expires))?;
    let server = Server::new(&server_args)?;
    let url = server.endpoint(&["api", "admin", "enroll-tokens"]);
    let body = json!({"channel": args.channel, "uses": args.uses, "expires_in_secs": expires});
    let (_, answer) = server.send("enroll-token", server.client.post(url).json(&body))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let token = answer["token"]
        .as_str()
        .context("enroll-token: the server's answer holds no token")?;
    // The token alone on stdout (`> join.token`); what it is on stderr.
    println!("{token}");
    eprintln!(
        "worker-release: join token {} for {} worker(s) on {}, expires {}; shown once: give it to the worker as WORKER_ENROLL_TOKEN_FILE (mode 0600)",
        answer["id"].as_str().unwrap_or("?"),
        answer["uses"],
        answer["channel"].as_str().unwrap_or("any channel"),
        answer["expires"].as_str().unwrap_or("?"),
    );
    Ok(())
}

fn format_list(answer: &Value) -> String {
    let mut out = format!(
        "{:<14} {:<12} {:>9} {:<22} {:<9} {}\n",
        "ID", "CHANNEL", "USES", "EXPIRES", "STATE", "CREATED BY"
    );
    for token in answer["enroll_tokens"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<14} {:<12} {:>9} {:<22} {:<9} {}\n",
            token["id"].as_str().unwrap_or("?"),
            token["channel"].as_str().unwrap_or("(any)"),
            format!("{}/{}", token["uses"], token["max_uses"]),
            token["expires"].as_str().unwrap_or("?"),
            token["state"].as_str().unwrap_or("?"),
            token["created_by"].as_str().unwrap_or("?"),
        ));
    }
    out
}
