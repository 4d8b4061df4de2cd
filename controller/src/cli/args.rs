//! The `deskside` command line: every subcommand, flag and value parser (clap).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::{Scope, UnknownScope};

use super::diag_all;

#[derive(Debug, Parser)]
#[command(
    name = "deskside",
    version,
    about = "Deskside controller and technician CLI"
)]
pub struct Cli {
    /// Controller data directory (CA, keys, database, evidence).
    #[arg(long, global = true, env = "DESKSIDE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Controller config file (default $DESKSIDE_CONFIG, else /etc/deskside/controller.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr: human or json (one object per line); default from the config.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<deskside_config::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory: CA, server certificate, script-signing key, database.
    Init,
    /// Run the controller in the foreground; Ctrl-C or SIGTERM drains and stops.
    Serve {
        /// QUIC listen address (default from the config file, else 0.0.0.0:4433).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Metrics and health (HTTP) listen address (default 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
    },
    /// Enrollment tokens for agents.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Admin, on the controller host: manage enrolled agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Technicians.
    Tech {
        #[command(subcommand)]
        command: TechCommand,
    },
    /// Admin, on the controller host: the web console's logins and certificate.
    Console {
        #[command(subcommand)]
        command: ConsoleCommand,
    },
    /// On a technician workstation: make a key, get it certified, save the profile.
    Login {
        /// The token printed by `deskside tech add`.
        token: String,
    },
    /// List enrolled agents and whether they are connected.
    Agents {
        #[arg(long)]
        json: bool,
    },
    /// Tickets.
    Ticket {
        #[command(subcommand)]
        command: TicketCommand,
    },
    /// Pull a diagnostics snapshot from an agent (or every selected agent with --all) and
    /// store it on a ticket.
    ///
    /// With --all, the exit status is 0 when every selected agent stored a snapshot, else
    /// the worst outcome: 1 if any pull failed, else 3 if any agent refused, else 5 if
    /// some were offline; an empty selection exits 1.
    #[command(group(ArgGroup::new("target").required(true).args(["agent", "all"])))]
    Diag {
        /// Agent id or hostname.
        agent: Option<String>,
        /// Every enrolled agent (narrowed by --match and --os); offline ones are skipped
        /// and reported.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        ticket: u64,
        /// With --all: a glob on the hostname or agent id, e.g. 'pc-04*'.
        #[arg(long = "match", value_name = "HOSTNAME_GLOB", requires = "all")]
        hostname_glob: Option<String>,
        /// With --all: the OS name contains this (any case), e.g. debian, 'ubuntu 24'.
        #[arg(long, value_name = "PATTERN", requires = "all")]
        os: Option<String>,
        /// With --all: pulls in flight at once over the one connection (1 to 64).
        #[arg(
            long,
            value_name = "C",
            default_value_t = diag_all::DEFAULT_CONCURRENCY,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(diag_all::MAX_CONCURRENCY)),
            requires = "all"
        )]
        concurrency: u32,
        #[arg(long)]
        json: bool,
    },
    /// Support sessions: ask the user, join a user's code, end.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// The approved script catalog.
    Script {
        #[command(subcommand)]
        command: ScriptCommand,
    },
    /// Run a catalog script on an agent; output streams live and is stored on the ticket.
    Run {
        /// Agent id or hostname.
        agent: String,
        /// Script name from `deskside script list`.
        script: String,
        #[arg(long)]
        ticket: u64,
        /// A parameter, repeatable: --param host=example.org
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        #[arg(long)]
        json: bool,
    },
    /// Collect a regular file from an agent's machine and store it on a ticket as signed
    /// evidence (needs the `files` scope: a session or the machine's policy).
    Collect {
        /// Agent id or hostname.
        agent: String,
        /// Absolute path of a regular file on that machine.
        path: String,
        #[arg(long)]
        ticket: u64,
        #[arg(long)]
        json: bool,
    },
    /// Controller configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Admin, on the controller host: a consistent online copy of the database, evidence
    /// and keys in one file (it holds the CA key: keep it safe).
    Backup {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Admin: put a backup into a new, empty data directory (--data), checking every file.
    Restore {
        #[arg(value_name = "FILE")]
        archive: PathBuf,
    },
    /// The running controller at a glance: health, agents and technicians connected,
    /// outbox, request counts.
    Status {
        /// The controller's metrics address (default `[metrics] listen` from the config,
        /// else 127.0.0.1:9464; an unspecified address such as 0.0.0.0 is asked on loopback).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        #[arg(long)]
        json: bool,
    },
    /// Everything above, locally, in one go: a throwaway controller, agent and technician,
    /// with the web console on loopback.
    Demo {
        /// Keep the controller, the agent and the web console running after the demo,
        /// until Ctrl-C, to look around in a browser.
        #[arg(long)]
        console: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Ask the agent's user for a session (or let the machine's policy answer).
    Request {
        /// Agent id or hostname.
        agent: String,
        #[arg(long)]
        ticket: u64,
        /// Comma-separated: diagnostics, scripts:l1, scripts:l2, scripts:l3, files.
        #[arg(long, value_parser = parse_scopes)]
        scopes: ScopeList,
        /// How long the session lasts once approved.
        #[arg(long = "for", default_value = "30m", value_parser = positive_duration)]
        duration: Duration,
        /// How long to wait for the user's answer.
        #[arg(long, default_value = "2m", value_parser = positive_duration)]
        wait: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Join the session a user started with `deskside-agent support`, by their code.
    Join {
        code: String,
        #[arg(long)]
        ticket: u64,
        #[arg(long)]
        json: bool,
    },
    /// End your session on an agent; anything it runs is stopped.
    End {
        agent: String,
        #[arg(long)]
        ticket: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScriptCommand {
    /// List the catalog.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one script: manifest, parameters, body and its hash.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Admin, on the controller host: validate, sign and add manifests (TOML + body).
    Add {
        #[arg(required = true, value_name = "MANIFEST")]
        files: Vec<PathBuf>,
    },
}

/// Parsed `--scopes` (a newtype so clap treats the list as one value).
#[derive(Debug, Clone)]
pub struct ScopeList(pub Vec<Scope>);

/// A flag's value that does not parse; clap prints it after the flag's name.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error(transparent)]
    Scope(#[from] UnknownScope),
    #[error("expected KEY=VALUE")]
    NoEquals,
    #[error("the KEY in KEY=VALUE is empty")]
    EmptyKey,
    #[error(transparent)]
    Duration(#[from] deskside_config::DurationError),
}

fn parse_scopes(s: &str) -> Result<ScopeList, ArgError> {
    Ok(ScopeList(Scope::parse_list(s)?))
}

fn parse_param(s: &str) -> Result<(String, String), ArgError> {
    let (k, v) = s.split_once('=').ok_or(ArgError::NoEquals)?;
    if k.is_empty() {
        return Err(ArgError::EmptyKey);
    }
    Ok((k.to_owned(), v.to_owned()))
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config file and environment without starting anything.
    Check {
        /// Also reach the configured Request Tracker: log in and look up each tier's
        /// queue (RT must be up; nothing is written).
        #[arg(long)]
        reach: bool,
    },
    /// Print the annotated example config.
    Example,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a one-time enrollment token for one agent.
    Create {
        /// Address agents will dial, as they can reach it; repeat it (or separate with
        /// commas) for each node of a cluster. Default: `[cluster] controllers`.
        #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
        controller: Vec<String>,
        /// How long the token stays valid, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = positive_duration)]
        ttl: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Revoke an agent: its connection closes within seconds and it is refused after.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Make (or reset) an existing technician's console login and print its one-time
    /// setup link, where they choose a password and enroll an authenticator app.
    /// Resetting ends their console sessions.
    Add {
        name: String,
        /// Also give the admin pages (tokens, technicians, revocation).
        #[arg(long)]
        admin: bool,
        /// The console's address as browsers reach it (default: from `[console] listen`).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Print the controller's CA certificate (PEM), to import into browsers so they trust
    /// the console's certificate.
    Ca,
}

#[derive(Debug, Subcommand)]
pub enum TechCommand {
    /// Revoke a technician: their connections close within seconds and they are refused after.
    Revoke { name: String },
    /// Add a technician and print their one-time login token.
    Add {
        name: String,
        #[arg(long)]
        tier: Tier,
        /// Address the technician's workstation will dial; repeat it (or separate with
        /// commas) for each node of a cluster (default: `[cluster] controllers`, else the
        /// config's `listen` when it names one address, else loopback on its port — said
        /// on stderr).
        #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
        controller: Vec<String>,
        #[arg(long, default_value = "24h", value_parser = positive_duration)]
        ttl: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Open a ticket; prints its number.
    New {
        #[arg(long)]
        title: String,
        /// Agent id or hostname the ticket is about.
        #[arg(long)]
        agent: Option<String>,
        /// Who reported the problem.
        #[arg(long, default_value = "")]
        requester: String,
        /// low, normal, high or urgent (sets the SLA targets).
        #[arg(long, default_value = "normal")]
        priority: String,
        #[arg(long)]
        json: bool,
    },
    /// List tickets with SLA time left or breached.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a ticket with its timeline and evidence.
    Show {
        number: u64,
        #[arg(long)]
        json: bool,
    },
    /// Add a note to the timeline.
    Note { number: u64, text: String },
    /// Mark the ticket resolved.
    Resolve {
        number: u64,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Move the ticket to the next tier with a note and build its evidence bundle.
    Escalate {
        number: u64,
        #[arg(long)]
        to: Tier,
        #[arg(long)]
        note: String,
        /// Also write the bundle here (on this machine).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Build the evidence bundle without escalating and write it to DIR.
    Export {
        number: u64,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle's hashes, signatures and timeline chain (works offline).
    Verify {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Push the ticket to the external ticket system now (queued, retried until it works).
    Sync { number: u64 },
}

/// `--for`, `--wait`, `--ttl`: any duration longer than zero.
fn positive_duration(s: &str) -> Result<Duration, ArgError> {
    Ok(deskside_config::parse_duration_in(
        s,
        deskside_config::POSITIVE,
    )?)
}
