//! Publishes committed fraud alerts to a Kafka topic (`[alerts] topic`), for systems that react to alerts rather
//! than query them.
//!
//! Contract: **at least once**, keyed by user id, one JSON object per alert carrying its deterministic `alert_id`
//! (the consumer's dedupe key). The committer publishes checkpoint `n`'s alerts after their Iceberg commit and
//! before the checkpoint's completion marker; a crash in between leaves the commit intent, and recovery, which
//! finishes the intent, publishes that checkpoint's alerts again from what the `fraud_alerts` snapshot added. So no
//! committed alert is ever missing from the topic, and duplicates occur only around a crash.

use crate::fraud::ALERTS_TABLE;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{ALERTS_TABLE} batch lacks column {0}")]
    MissingColumn(&'static str),
    #[error("encoding alert: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One alert as published.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AlertMessage {
    pub alert_id: String,
    pub rule: String,
    pub severity: String,
    pub user_id: i64,
    pub wallet_id: Option<i64>,
    pub transaction_ids: Vec<i64>,
    /// Microseconds since the epoch.
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub event_time_us: i64,
    pub reason: String,
}

/// Reads the alerts of `fraud_alerts` batches (rows with a null required cell are skipped: the table schema rules
/// them out).
pub fn messages(batches: &[RecordBatch]) -> Result<Vec<AlertMessage>, PublishError> {
    let mut out = Vec::new();
    for b in batches {
        let col = |name: &'static str| {
            b.column_by_name(name)
                .ok_or(PublishError::MissingColumn(name))
        };
        let text = |name: &'static str| {
            col(name)?
                .as_string_opt::<i32>()
                .cloned()
                .ok_or(PublishError::MissingColumn(name))
        };
        let int = |name: &'static str| {
            col(name)?
                .as_primitive_opt::<Int64Type>()
                .cloned()
                .ok_or(PublishError::MissingColumn(name))
        };
        let ts = |name: &'static str| {
            col(name)?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .cloned()
                .ok_or(PublishError::MissingColumn(name))
        };
        let (id, rule, severity, ids, reason) = (
            text("alert_id")?,
            text("rule")?,
            text("severity")?,
            text("transaction_ids")?,
            text("reason")?,
        );
        let (user, wallet) = (int("user_id")?, int("wallet_id")?);
        let (start, end, at) = (ts("window_start")?, ts("window_end")?, ts("event_time")?);
        for i in 0..b.num_rows() {
            if id.is_null(i) || user.is_null(i) {
                continue;
            }
            out.push(AlertMessage {
                alert_id: id.value(i).to_string(),
                rule: rule.value(i).to_string(),
                severity: severity.value(i).to_string(),
                user_id: user.value(i),
                wallet_id: wallet.is_valid(i).then(|| wallet.value(i)),
                transaction_ids: ids
                    .value(i)
                    .split(',')
                    .filter_map(|s| s.trim().parse().ok())
                    .collect(),
                window_start_us: start.value(i),
                window_end_us: end.value(i),
                event_time_us: at.value(i),
                reason: reason.value(i).to_string(),
            });
        }
    }
    Ok(out)
}

/// A producer bound to the alerts topic.
pub struct AlertPublisher {
    producer: FutureProducer,
    topic: String,
}

impl AlertPublisher {
    /// `client` and `sasl_password` are the pipeline's Kafka settings (TLS/SASL pass through).
    pub fn new(
        brokers: &str,
        client: &BTreeMap<String, String>,
        sasl_password: Option<&str>,
        topic: &str,
    ) -> Result<Self, PublishError> {
        let mut cc = ClientConfig::new();
        for (k, v) in client {
            cc.set(k, v);
        }
        cc.set("bootstrap.servers", brokers)
            // Idempotence would need the transactional/idempotent producer API that some brokers lack; duplicates
            // are allowed by the contract anyway.
            .set("acks", "all")
            .set("message.timeout.ms", "30000");
        if let Some(pw) = sasl_password {
            cc.set("sasl.password", pw);
        }
        Ok(AlertPublisher {
            producer: cc.create()?,
            topic: topic.to_string(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes every alert of `batches` and waits until the broker has acknowledged all of them.
    pub async fn publish(&self, batches: &[RecordBatch]) -> Result<usize, PublishError> {
        let msgs = messages(batches)?;
        let mut pending = Vec::with_capacity(msgs.len());
        for m in &msgs {
            let payload = serde_json::to_vec(m)?;
            let key = m.user_id.to_string();
            let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
            pending.push(
                self.producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)?,
            );
        }
        Ok(pending.len())
    }
}
