//! The `callgate` command line: parses arguments and calls the library; nothing else.
#![forbid(unsafe_code)]

mod cli;

use cli::demo;

use anyhow::Context as _;
use callgate::cases;
use callgate::config;
use callgate::delivery::open_store;
use callgate::gateway::Gateway;
use callgate::mapping::MappingSet;
use callgate::translate::{Outcome, TranslateError, Translator};
use clap::{Args, Parser, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

// JSON translation allocates many small strings and maps; mimalloc cuts the per-event cost by
// about a fifth against the system allocator (benches/translate.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// callgate translates call, presence and video-session status events between vendors
/// (RingCentral, Vidyo, EnableX, Oracle SBC ISR, Enreach, CloudEvents) through declarative
/// mapping files: JSONPath in, Handlebars out. `serve` runs it as a gateway with a durable
/// queue; `demo` shows a real RingCentral call flow arriving at a Vidyo receiver.
#[derive(Parser)]
#[command(name = "callgate", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct MappingsArg {
    /// Folder of vendor mappings.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "mappings",
        env = "CALLGATE_MAPPINGS"
    )]
    mappings: PathBuf,
}

#[derive(Args)]
struct ConfigArg {
    /// Configuration file (YAML; `${NAME}` reads an environment variable). Accepted before or
    /// after a subcommand (`dlq --config F list`, `dlq list --config F`).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "config/callgate.yaml",
        env = "CALLGATE_CONFIG",
        global = true
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: receive vendor webhooks on the configured routes, translate them and
    /// deliver them to each route's destinations (durable queue, retries, dead letters,
    /// per-call order). SIGTERM or Ctrl-C stops intake, finishes requests and attempts in
    /// flight, and leaves undelivered messages in the store.
    Serve(ConfigArg),
    /// Show the main job in one command: start the gateway on the shipped config with a
    /// built-in loopback receiver, send a real RingCentral call flow through its RingCentral
    /// → Vidyo route, print each delivery the receiver gets, and exit.
    Demo(ConfigArg),
    /// Translate vendor payloads read from FILE (or stdin) into another vendor's shape.
    ///
    /// Input is one or more JSON documents (a file, NDJSON or concatenated); for oracle-isr a
    /// URL or query string per line also works. Events pass through the lifecycle tracker, so
    /// a flow given in one input gets duplicates and stale events dropped and `call.resumed`
    /// derived. Each output is printed as one compact JSON line: the body, or for oracle-isr
    /// the request as {"method","url"}. Exit status: 0 on success (an event the target has no
    /// template for is skipped, with the reason on stderr); 2 on bad input.
    Translate {
        /// Source vendor id, or `auto` to detect it from the payload's shape.
        #[arg(long, value_name = "VENDOR")]
        from: String,
        /// Target vendor id (ringcentral, vidyo, enablex, oracle-isr, enreach, cloudevents).
        #[arg(long, value_name = "VENDOR")]
        to: String,
        #[command(flatten)]
        mappings: MappingsArg,
        /// Destination URL used to build requests (matters for query targets like oracle-isr).
        #[arg(
            long,
            value_name = "URL",
            default_value = "http://127.0.0.1:8081/events"
        )]
        url: String,
        /// Input file; `-` or nothing reads stdin.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Validate the mappings (every JSONPath, template, table and case) and, with --config,
    /// the configuration against them; report every problem with its file and line. Exit 1
    /// if there is any.
    Check {
        /// Folder of vendor mappings (default: the config's `mappings`, else `mappings`).
        #[arg(long, value_name = "DIR", env = "CALLGATE_MAPPINGS")]
        mappings: Option<PathBuf>,
        /// Also validate this configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the canonical model every mapping is compiled against: each field's path, type,
    /// unit or allowed values, which vendors' decode rules set it, and what it means (Markdown;
    /// docs/canonical-model.md is this output). `--json-schema` prints it as JSON Schema.
    Schema {
        /// Print the model as a JSON Schema (draft 2020-12) instead of Markdown.
        #[arg(long)]
        json_schema: bool,
        #[command(flatten)]
        mappings: MappingsArg,
    },
    /// Run every mappings/*/cases/*.yaml, print what differs for each failure and a closing
    /// line `N passed, N failed`. Exit 1 if any failed.
    Test(MappingsArg),
    /// Follow what flows through a running gateway: every event accepted on a route (with
    /// what each destination got), every delivery outcome (delivered, retrying with the next
    /// attempt's time, dead, skipped and why), every reload. One line per record, coloured on
    /// a terminal; `--json` prints the records. Connects to the admin listener named in the
    /// config (or --admin) with its admin token; reconnects after a drop. Bodies appear only
    /// with `server.tail_bodies: true` (and only with --json).
    Tail {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this route.
        #[arg(long, value_name = "ROUTE")]
        route: Option<String>,
        /// Only this destination.
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
        /// Only this canonical type, exact or a prefix ending in `*` (`call.*`).
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// Only this partitionkey: the ordering key of the events, a call id (a user id for
        /// presence). `--call` is the same.
        #[arg(long, value_name = "ID", visible_alias = "call")]
        partitionkey: Option<String>,
        /// Print each record's JSON instead of a line.
        #[arg(long)]
        json: bool,
    },
    /// Send a time window of the archive again, through a running gateway's queue (lanes,
    /// retries and dead letters apply), in each call's original order, with the original
    /// idempotency keys (event id; `webhook-id` when signed): a receiver that saw a message
    /// drops it.
    ///
    /// By default the archived canonical events are rendered through today's mapping of
    /// --destination (or of --vendor for --to-url). --reroute runs the archived vendor
    /// payloads through today's routes and mappings as if they arrived now (a fixed mapping
    /// re-applied); replay has a lifecycle tracker of its own, so nothing is dropped as stale
    /// for having been delivered live.
    ///
    /// Calls that went on: with --until, a call or user with archived events after the
    /// window is left out (replaying it would end its receiver on an old state) unless
    /// --include-superseded. Without --until, events that arrive while the replay runs are
    /// sent after it too, so each call ends on its latest state. Running the same replay
    /// again (same mode, target and configuration) queues only what an interrupted run did
    /// not.
    ///
    /// Examples:
    ///   callgate replay --since 2026-12-04T09:00Z --destination vidyo
    ///   callgate replay --since 2h --route rc-to-vidyo --destination vidyo --call 7Bd7kR0
    ///   callgate replay --since 2026-12-04T09:00Z --until 2026-12-04T10:00Z --reroute --dry-run
    ///   callgate replay --since 1d --to-url https://backup.example/events --vendor vidyo --type 'call.*'
    ///   callgate replay --since 2026-12-04T09:00Z --until 2026-12-04T10:00Z \
    ///       --destination vidyo --include-superseded --json --admin http://10.0.0.5:9090
    #[command(verbatim_doc_comment)]
    Replay {
        #[command(flatten)]
        admin: AdminArgs,
        /// Start of the window: RFC 3339 (`2026-12-04T09:00Z`, seconds optional, any offset)
        /// or a duration ago (`2h`, `1d`).
        #[arg(long, value_name = "TIME")]
        since: String,
        /// End of the window, exclusive, same forms. Default: now, and what arrives while the
        /// replay runs.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only payloads of this route (default: every route that has --destination).
        #[arg(long, value_name = "ROUTE")]
        route: Option<String>,
        /// Send to this destination of the route(s), by name.
        #[arg(long, value_name = "NAME", conflicts_with = "to_url")]
        destination: Option<String>,
        /// Send to a URL no route names (plain HTTP POST, no auth), rendered by --vendor.
        #[arg(long, value_name = "URL", requires = "vendor")]
        to_url: Option<String>,
        /// The vendor whose mapping renders for --to-url (`vidyo`, `enreach`, …).
        #[arg(long, value_name = "VENDOR", requires = "to_url")]
        vendor: Option<String>,
        /// Only this call: a call id, leg id, user, partitionkey or phone number.
        #[arg(long, value_name = "ID")]
        call: Option<String>,
        /// Only this canonical type, exact or a prefix ending in `*` (`call.*`).
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// Run the archived payloads through today's routes and mappings (every destination
        /// of the route, or only --destination).
        #[arg(long)]
        reroute: bool,
        /// Queue nothing: print each message that would be sent (one JSON line each).
        #[arg(long)]
        dry_run: bool,
        /// Also send calls that went on after --until.
        #[arg(long, requires = "until")]
        include_superseded: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Look up calls in a running gateway's archive: what happened to a call, in which
    /// order, in which vendor shape, and what each receiver answered.
    Calls {
        #[command(subcommand)]
        action: CallsAction,
    },
    /// The RingCentral subscription keepers of a running gateway.
    Ringcentral {
        #[command(subcommand)]
        action: RingcentralAction,
    },
    /// Inspect and replay dead letters (messages that will not be retried) in the store the
    /// configuration names. Safe beside a running gateway.
    Dlq {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: DlqAction,
    },
}

/// Where a client command finds the admin listener.
#[derive(Args)]
struct AdminArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Admin listener base URL (default: http:// + the config's server.admin_listen).
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// Admin token (default: the config's server.admin_token).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CALLGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

#[derive(Subcommand)]
enum CallsAction {
    /// A call's timeline: each event received (time, type, vendor, leg, event id, the
    /// lifecycle's verdict), then per destination its fate and every delivery attempt.
    /// `--json` prints the whole timeline with payloads and canonical events
    /// (`GET /admin/calls/{id}`). The page: http://ADMIN/admin/timeline?call=ID
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        /// A call id, leg id, user, partitionkey or phone number.
        id: String,
        /// Print the timeline as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The calls a call id, leg id, user or phone number finds, most recent first: ordering
    /// key, first and last time, events, vendors, types. Exit 1 if none.
    Search {
        #[command(flatten)]
        admin: AdminArgs,
        /// What to look for.
        term: String,
        /// Print the calls as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RingcentralAction {
    /// One line per route with a subscription keeper: state, subscription id, expiry, next
    /// check, counts, refused filters and the last error. Exit 1 unless every keeper is
    /// active.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// One line per dead letter under a header row: id, route/destination, type, event id,
    /// attempts, when it died (RFC 3339, UTC), last error. `--json` prints them as JSON.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print a JSON array (the admin API's shape) instead of lines, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter in full (JSON): the request and every attempt.
    Show {
        /// Dead letter id.
        id: i64,
    },
    /// Put a dead letter (or all of them) back in the queue; a running gateway delivers it.
    Replay {
        /// Dead letter id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Delete every dead letter. Asks first on a terminal; elsewhere needs `--yes`.
    Purge {
        /// Delete without asking.
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = matches!(cli.command, Command::Serve(_) | Command::Demo(_));
    let _tracing = callgate::telemetry::init_tracing(if server { "info" } else { "warn" });
    let result = match cli.command {
        Command::Translate {
            from,
            to,
            mappings,
            url,
            file,
        } => translate(&from, &to, &mappings.mappings, &url, file),
        Command::Check { mappings, config } => check(mappings, config),
        Command::Test(m) => test(&m.mappings),
        Command::Schema {
            json_schema,
            mappings,
        } => schema(json_schema, &mappings.mappings),
        Command::Serve(c) => runtime().and_then(|rt| rt.block_on(serve(&c.config))),
        Command::Demo(c) => runtime().and_then(|rt| rt.block_on(demo::run(&c.config))),
        Command::Tail {
            admin,
            route,
            destination,
            event_type,
            partitionkey,
            json,
        } => admin_endpoint(admin)
            .and_then(|(admin, authorization)| {
                let filters = [
                    ("route", route),
                    ("destination", destination),
                    ("type", event_type),
                    ("partitionkey", partitionkey),
                ]
                .into_iter()
                .filter_map(|(name, value)| Some((name, value?)))
                .collect();
                let args = cli::tail::TailArgs {
                    admin,
                    authorization,
                    filters,
                    json,
                };
                runtime().and_then(|rt| rt.block_on(cli::tail::run(args)))
            })
            .map(|()| ExitCode::SUCCESS),
        Command::Replay {
            admin,
            since,
            until,
            route,
            destination,
            to_url,
            vendor,
            call,
            event_type,
            reroute,
            dry_run,
            include_superseded,
            json,
        } => admin_endpoint(admin).and_then(|(admin, authorization)| {
            let request = callgate::replay::ReplayRequest {
                since,
                until,
                route,
                destination,
                to_url,
                vendor,
                call,
                types: event_type,
                reroute,
                dry_run,
                include_superseded,
            };
            runtime().and_then(|rt| {
                rt.block_on(cli::archive::replay(&admin, authorization, &request, json))
            })
        }),
        Command::Calls {
            action: CallsAction::Show { admin, id, json },
        } => admin_endpoint(admin).and_then(|(admin, authorization)| {
            runtime()
                .and_then(|rt| rt.block_on(cli::archive::show(&admin, authorization, &id, json)))
        }),
        Command::Calls {
            action: CallsAction::Search { admin, term, json },
        } => admin_endpoint(admin).and_then(|(admin, authorization)| {
            runtime().and_then(|rt| {
                rt.block_on(cli::archive::search(&admin, authorization, &term, json))
            })
        }),
        Command::Ringcentral {
            action: RingcentralAction::Status { admin },
        } => admin_endpoint(admin).and_then(|(admin, authorization)| {
            runtime().and_then(|rt| rt.block_on(cli::ringcentral::status(&admin, authorization)))
        }),
        Command::Dlq { config, action } => {
            runtime().and_then(|rt| rt.block_on(dlq(&config.config, action)))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callgate: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The admin listener a client command talks to: `--admin` and `--token`, else the
/// config's admin listener (an unspecified address means loopback) and admin token.
/// Returns the base URL and the `Authorization` value.
fn admin_endpoint(args: AdminArgs) -> anyhow::Result<(String, Option<String>)> {
    let AdminArgs {
        config: ConfigArg {
            config: config_path,
        },
        admin,
        token,
    } = args;
    let config = match (&admin, &token) {
        (Some(_), Some(_)) => None,
        _ if admin.is_some() && !config_path.exists() => None,
        _ => Some(config::load(&config_path)?),
    };
    let admin = match (admin, &config) {
        (Some(url), _) => url,
        (None, Some(c)) => {
            let mut addr = c.server.admin_listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
        (None, None) => {
            anyhow::bail!("give --admin URL or a --config that names the admin listener")
        }
    };
    let token = token.or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.server.admin_token.as_ref())
            .map(|t| t.value().to_string())
    });
    Ok((admin, token.map(|t| format!("Bearer {t}"))))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load(mappings: &Path) -> anyhow::Result<Arc<MappingSet>> {
    MappingSet::load(mappings)
        .map(Arc::new)
        .map_err(|problems| anyhow::anyhow!("invalid mappings:\n{problems}"))
}

async fn serve(config_path: &Path) -> anyhow::Result<ExitCode> {
    let gateway = Gateway::start_from_file(config_path).await?;
    shutdown_signal().await;
    tracing::info!("stopping: no new requests; finishing requests and attempts in flight");
    gateway.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn dlq(config_path: &Path, action: DlqAction) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path)?;
    let store = open_store(&config.store, &config.delivery, &config.archive, true).await?;
    let queue = store.dead_letters.clone();
    let mut out = std::io::stdout().lock();
    match action {
        DlqAction::List { limit, json } => {
            let dead = queue.list(limit).await?;
            if json {
                let items: Vec<_> = dead.iter().map(|d| d.to_json()).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
                store.close();
                return Ok(ExitCode::SUCCESS);
            }
            writeln!(
                out,
                "ID\tROUTE/DESTINATION\tTYPE\tEVENT\tATTEMPTS\tDIED\tLAST ERROR"
            )?;
            for d in &dead {
                let last = d.attempt_log.last();
                let why = last
                    .map(|a| match (a.status, &a.error) {
                        (Some(s), _) => format!("HTTP {s}"),
                        (None, Some(e)) => e.clone(),
                        _ => String::new(),
                    })
                    .unwrap_or_default();
                let died = chrono::DateTime::from_timestamp_millis(d.dead_at)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{}\t{}/{}\t{}\t{}\t{}\t{died}\t{}",
                    d.id,
                    d.message.route,
                    d.message.destination,
                    d.message.event_type,
                    d.message.event_id,
                    d.attempts,
                    why
                )?;
            }
            writeln!(out, "{} dead letter(s)", dead.len())?;
        }
        DlqAction::Show { id } => {
            let d = queue.show(id).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&d.to_json())?)?;
        }
        DlqAction::Replay { id, all } => {
            let n = queue.replay(if all { None } else { id }).await?;
            writeln!(out, "replayed {n} dead letter(s)")?;
        }
        DlqAction::Purge { yes } => {
            use std::io::IsTerminal as _;
            if !yes {
                if !std::io::stdin().is_terminal() {
                    eprintln!(
                        "callgate: dlq purge deletes every dead letter; add --yes to do it without a terminal to ask on"
                    );
                    store.close();
                    return Ok(ExitCode::from(2));
                }
                eprint!("Delete every dead letter in the store? [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    eprintln!("nothing deleted");
                    store.close();
                    return Ok(ExitCode::from(1));
                }
            }
            let n = queue.purge().await?;
            writeln!(out, "purged {n} dead letter(s)")?;
        }
    }
    store.close();
    Ok(ExitCode::SUCCESS)
}

fn translate(
    from: &str,
    to: &str,
    mappings: &Path,
    url: &str,
    file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let set = load(mappings)?;
    let translator = match Translator::new(set, from, to, url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("callgate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let bytes = match file.as_deref() {
        Some(path) if path != Path::new("-") => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read stdin")?;
            bytes
        }
    };
    // Bytes are never replaced: a correlation id with U+FFFD in it is a wrong id.
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            eprintln!(
                "callgate: {from}: input is not valid UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let bad_input = |e: TranslateError| {
        eprintln!("callgate: {e}");
        Ok(ExitCode::from(2))
    };
    let payloads = match translator.read(&text) {
        Ok(p) => p,
        Err(e) => return bad_input(e),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for payload in &payloads {
        let outcomes = match translator.translate(payload) {
            Ok(o) => o,
            Err(e) => return bad_input(e),
        };
        for outcome in outcomes {
            match &outcome {
                Outcome::Skipped { event_type, id } => {
                    eprintln!(
                        "callgate: skipped event {id}: {to} has no template for type {event_type}"
                    );
                }
                Outcome::Dropped(verdict) => eprintln!("callgate: dropped: {}", verdict.reason()),
                Outcome::Message { .. } => {}
            }
            if let Some(line) = outcome.output_text() {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(mappings: Option<PathBuf>, config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut problems: Vec<String> = Vec::new();
    let config = match &config_path {
        Some(path) => match config::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
        None => None,
    };
    let dir = mappings
        .or_else(|| config.as_ref().map(|c| c.mappings.clone()))
        .unwrap_or_else(|| PathBuf::from("mappings"));
    let with_config = config.as_ref().zip(config_path.as_deref());
    match callgate::check::problems(&dir, with_config) {
        Ok(checked) if problems.is_empty() => {
            println!(
                "ok: {} vendors, mappings and cases valid{}",
                checked.mappings.vendors().count(),
                if config.is_some() {
                    ", configuration valid"
                } else {
                    ""
                }
            );
            if let Some(config) = &config {
                // What a relative path in the file came to: next to the file, not here.
                println!("  mappings: {}", config.mappings.display());
                if let config::StoreConfig::Sqlite { path } = &config.store {
                    println!("  store: sqlite {}", path.display());
                }
            }
            for line in &checked.derived {
                println!("  {line}");
            }
            // How each template runs, where it is not the fast way (README "How templates run").
            for vendor in checked.mappings.vendors() {
                let Some(encoder) = vendor.encoder() else {
                    continue;
                };
                let unplanned = encoder.unplanned();
                for (file, why) in &unplanned {
                    println!(
                        "  note: {}/{file} is rendered by Handlebars, without a render plan: it uses {why}",
                        vendor.id
                    );
                }
                for file in encoder.unproven() {
                    if !unplanned.iter().any(|(f, _)| *f == file) {
                        println!(
                            "  note: {}/{file} is parsed after each render: its JSON is not proven valid at load",
                            vendor.id
                        );
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Ok(_) => {}
        Err(found) => problems.extend(found),
    }
    for p in &problems {
        eprintln!("{p}");
    }
    eprintln!("{} problem(s)", problems.len());
    Ok(ExitCode::from(1))
}

/// `callgate schema`: the canonical model, with the vendors of `mappings` that set each field.
fn schema(json_schema: bool, mappings: &Path) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let text = if json_schema {
        serde_json::to_string_pretty(&callgate::model::schema::json_schema())? + "\n"
    } else {
        callgate::model::schema::markdown(&load(mappings)?.setters())
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn test(mappings: &Path) -> anyhow::Result<ExitCode> {
    let set = load(mappings)?;
    let reports = cases::run_all(&set);
    let failed = reports.iter().filter(|r| !r.passed()).count();
    for report in reports.iter().filter(|r| !r.passed()) {
        println!("FAIL {} ({})", report.name, report.file.display());
        for failure in &report.failures {
            println!("  {failure}");
        }
    }
    println!("{} passed, {} failed", reports.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
