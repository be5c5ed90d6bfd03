//! Process-wide `tracing` set-up: logs to stderr (text or JSON, filtered by `RUST_LOG`, default `info`) and,
//! when configured, OpenTelemetry span export over OTLP/gRPC.
//!
//! Contract:
//! * The two outputs are filtered independently: `RUST_LOG=warn` quiets the logs without losing the checkpoint
//!   traces, and the exporter only ever sees ledgerstream's own spans at `info` and above (not those of
//!   librdkafka wrappers, hyper or the Iceberg crates), which keeps a trace at a handful of spans per checkpoint.
//! * Spans go through a batch processor on its own thread; [`Telemetry::shutdown`] flushes it, so the final
//!   checkpoint of a drained run is exported before the process exits.
//! * [`init`] must run inside a tokio runtime when export is on: the gRPC channel lives on that runtime.

use crate::config::OtlpSettings;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// A per-layer filter whose callsites never cache `Interest::always`.
///
/// tracing-subscriber hands each per-layer filter's verdict from `enabled` to `on_new_span` through a thread-local.
/// A callsite cached as `always` skips `enabled`, so its span is judged by whatever the previous `enabled` call on
/// that thread decided, e.g. a debug-level `log` record from a dependency seen through the log bridge: the span then
/// silently never reaches the exporter (tracing issue 2519). That showed up as a partition's `seal` span missing from
/// a checkpoint's trace. Capping the interest at `sometimes` makes every span and event ask first, for the cost of
/// one filter call; `never` stays cached, so disabled callsites stay free.
pub struct AskEveryTime<F>(pub F);

impl<S, F: Filter<S>> Filter<S> for AskEveryTime<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let interest = self.0.callsite_enabled(meta);
        if interest.is_never() {
            interest
        } else {
            Interest::sometimes()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Keeps the exporter alive; flush it with [`Telemetry::shutdown`] before exiting.
#[must_use = "dropping it without shutdown() may lose the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the span exporter. Blocks until the batch is sent (or the exporter's timeout passes); call
    /// it from a blocking context.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            // The subscriber is still installed, but the exporter may be what failed: say it on stderr too.
            eprintln!("trace export shutdown: {e}");
        }
    }
}

/// The span exporter and its tracer provider, for `settings`.
pub fn tracer_provider(settings: &OtlpSettings) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: settings.endpoint.clone(),
            reason: e.to_string(),
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // Parent-based: a sampled checkpoint keeps all of its children, an unsampled one none.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sampling_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build())
}

/// Installs the global subscriber: logs, plus span export when `otlp` is given.
pub fn init(format: LogFormat, otlp: Option<&OtlpSettings>) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    layers.push(match format {
        // Colours only on a terminal: log files and collectors get plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    });
    let provider = match otlp {
        Some(settings) => {
            let provider = tracer_provider(settings)?;
            let ours = AskEveryTime(
                Targets::new()
                    .with_target("ledgerstream", LevelFilter::INFO)
                    .with_default(LevelFilter::OFF),
            );
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("ledgerstream"))
                    .with_filter(ours)
                    .boxed(),
            );
            Some(provider)
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    if let Some(s) = otlp {
        tracing::info!(
            endpoint = %s.endpoint,
            service_name = %s.service_name,
            sampling_ratio = s.sampling_ratio,
            "exporting traces over OTLP/gRPC"
        );
    }
    Ok(Telemetry { provider })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::callsite::{Callsite, Identifier};
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;
    use tracing::span::{Attributes, Id};
    use tracing::{Dispatch, Level};

    /// Records the names of the spans it is shown.
    #[derive(Clone, Default)]
    struct Names(Arc<Mutex<Vec<&'static str>>>);

    impl<S: tracing::Subscriber> Layer<S> for Names {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            self.0.lock().unwrap().push(attrs.metadata().name());
        }
    }

    /// What the `log` bridge builds for a record: metadata decided per call, not per callsite.
    struct LogCallsite;
    static LOG_CALLSITE: LogCallsite = LogCallsite;
    static LOG_FIELDS: &[&str] = &["message"];
    static LOG_META: Metadata<'static> = Metadata::new(
        "log record",
        "opendal::services",
        Level::DEBUG,
        None,
        None,
        None,
        FieldSet::new(LOG_FIELDS, Identifier(&LOG_CALLSITE)),
        Kind::EVENT,
    );
    impl Callsite for LogCallsite {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            &LOG_META
        }
    }

    #[test]
    fn a_span_after_a_disabled_log_record_still_reaches_the_exporter_layer() {
        let exported = Names::default();
        let logs = Names::default();
        let subscriber = Registry::default()
            .with(logs.clone().with_filter(LevelFilter::INFO))
            .with(
                exported.clone().with_filter(AskEveryTime(
                    Targets::new()
                        .with_target("ledgerstream", LevelFilter::INFO)
                        .with_default(LevelFilter::OFF),
                )),
            );
        let dispatch = Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            for _ in 0..3 {
                // A dependency's debug record asks first (both filters refuse it), then our span follows.
                let _ = dispatch.enabled(&LOG_META);
                let _span = tracing::info_span!("seal", partition = 0);
            }
        });
        assert_eq!(*exported.0.lock().unwrap(), vec!["seal"; 3]);
        assert_eq!(*logs.0.lock().unwrap(), vec!["seal"; 3]);
    }
}
