//! Telemetry: tracing initialisation and the metrics registry.

pub mod metrics;
pub mod tail;

/// Initialises tracing to stderr: `CALLGATE_LOG` sets the filter (default `info` for
/// servers, `warn` for one-shot commands), `CALLGATE_LOG_FORMAT=json` switches to JSON lines.
pub fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = if std::env::var("CALLGATE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Already initialised (tests start several gateways in one process): keep the first.
    let _ = result;
}
