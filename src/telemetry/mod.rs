//! Telemetry: tracing initialisation (text on a terminal, JSON lines otherwise, OTLP spans
//! with the `otel` feature), the metrics registry and the live tail.
//!
//! Spans along an event's path: `request` (route, vendor) around each inbound payload and
//! `delivery` (route, destination, delivery id, event id, call id, attempt) around each
//! attempt; log lines inside carry their fields, and the lines about one event name its
//! event id and call id.

pub mod metrics;
pub mod tail;

/// Keeps the OTLP exporter alive; dropping it flushes the spans not yet sent.
#[must_use = "dropping the guard stops span export"]
pub struct TracingGuard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Initialises tracing to stderr. `CALLGATE_LOG` sets the filter (default `info` for
/// servers, `warn` for one-shot commands). `CALLGATE_LOG_FORMAT` is `text` or `json`;
/// unset, logs are text on a terminal and JSON lines (one object per line, with the current
/// span's fields) otherwise — what log collectors read. With the `otel` feature and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans are
/// also exported over OTLP/HTTP (protobuf), service name `callgate`.
pub fn init_tracing(default_level: &str) -> TracingGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, fmt};

    let filter =
        EnvFilter::try_from_env("CALLGATE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let terminal = std::io::stderr().is_terminal();
    let json = match std::env::var("CALLGATE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !terminal,
    };
    let output = if json {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        fmt::layer()
            .with_ansi(terminal)
            .with_writer(std::io::stderr)
            .boxed()
    };
    #[cfg(feature = "otel")]
    let (otel, provider) = match otel::layer() {
        Some((layer, provider)) => (Some(layer), Some(provider)),
        None => (None, None),
    };
    #[cfg(not(feature = "otel"))]
    let otel: Option<tracing_subscriber::layer::Identity> = None;
    // Already initialised (tests start several gateways in one process): keep the first.
    let _ = tracing_subscriber::registry()
        .with(otel.map(|l| l.with_filter(EnvFilter::new("callgate=info"))))
        .with(output.with_filter(filter))
        .try_init();
    TracingGuard {
        #[cfg(feature = "otel")]
        provider,
    }
}

#[cfg(feature = "otel")]
mod otel {
    //! The OTLP exporter behind the `otel` feature.
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Registry;

    type OtelLayer =
        tracing_opentelemetry::OpenTelemetryLayer<Registry, opentelemetry_sdk::trace::Tracer>;

    /// The layer and its provider, when an OTLP endpoint is configured.
    pub fn layer() -> Option<(OtelLayer, SdkTracerProvider)> {
        let configured = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
        if !configured {
            return None;
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("callgate: OTLP span export disabled: {e}");
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("callgate")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("callgate");
        Some((tracing_opentelemetry::layer().with_tracer(tracer), provider))
    }
}
