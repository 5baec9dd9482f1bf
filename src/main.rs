//! The `callgate` command line: parses arguments and calls the library; nothing else.
#![forbid(unsafe_code)]

use anyhow::Context as _;
use callgate::mapping::{MappingSet, cases};
use callgate::translate::{Outcome, TranslateError, Translator};
use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// JSON translation allocates many small strings and maps; mimalloc cuts the per-event cost by
// about a fifth against the system allocator (benches/translate.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// callgate translates call, presence and video-session status events between vendors
/// (RingCentral, Vidyo, EnableX, Oracle SBC ISR, Enreach, CloudEvents) through declarative
/// mapping files: JSONPath in, Handlebars out.
#[derive(Parser)]
#[command(name = "callgate", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        /// Folder of vendor mappings.
        #[arg(
            long,
            value_name = "DIR",
            default_value = "mappings",
            env = "CALLGATE_MAPPINGS"
        )]
        mappings: PathBuf,
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
    /// Validate the mappings (every JSONPath, template, table and case) and report every
    /// problem with its file and line. Exit 1 if there is any.
    Check {
        /// Folder of vendor mappings.
        #[arg(
            long,
            value_name = "DIR",
            default_value = "mappings",
            env = "CALLGATE_MAPPINGS"
        )]
        mappings: PathBuf,
    },
    /// Run every mappings/*/cases/*.yaml, print what differs for each failure and a closing
    /// line `N passed, N failed`. Exit 1 if any failed.
    Test {
        /// Folder of vendor mappings.
        #[arg(
            long,
            value_name = "DIR",
            default_value = "mappings",
            env = "CALLGATE_MAPPINGS"
        )]
        mappings: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Translate {
            from,
            to,
            mappings,
            url,
            file,
        } => translate(&from, &to, &mappings, &url, file),
        Command::Check { mappings } => check(&mappings),
        Command::Test { mappings } => test(&mappings),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callgate: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(mappings: &Path) -> anyhow::Result<MappingSet> {
    MappingSet::load(mappings).map_err(|problems| anyhow::anyhow!("invalid mappings:\n{problems}"))
}

fn translate(
    from: &str,
    to: &str,
    mappings: &Path,
    url: &str,
    file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let set = load(mappings)?;
    let translator = match Translator::new(&set, from, to, url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("callgate: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let bytes = match file.as_deref() {
        Some(path) if path != std::path::Path::new("-") => {
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
    let text = String::from_utf8_lossy(&bytes);
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
                Outcome::Dropped(verdict) => eprintln!("callgate: dropped: {verdict:?}"),
                Outcome::Message { .. } => {}
            }
            if let Some(line) = outcome.output_line() {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(mappings: &Path) -> anyhow::Result<ExitCode> {
    let set = match MappingSet::load(mappings) {
        Ok(set) => set,
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s)", problems.0.len());
            return Ok(ExitCode::from(1));
        }
    };
    let failed: Vec<_> = cases::run_all(&set)
        .into_iter()
        .filter(|r| !r.passed())
        .collect();
    for report in &failed {
        eprintln!(
            "{}: case `{}` fails: {}",
            report.file.display(),
            report.name,
            report.failures.join("; ")
        );
    }
    if failed.is_empty() {
        println!(
            "ok: {} vendors, mappings and cases valid",
            set.vendors().count()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} problem(s)", failed.len());
        Ok(ExitCode::from(1))
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
