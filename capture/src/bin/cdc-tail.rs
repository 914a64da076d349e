//! `cdc-tail`: prints the records of change topics, for demos and debugging:
//! `cdc-tail --brokers HOST:PORT [--idle 3s] [--last N] TOPIC...` reads each topic from the beginning and stops once
//! no record arrived for `--idle`.

use std::time::Duration;

use clap::Parser;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};

/// Prints the records of Kafka topics from the beginning.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS")]
    brokers: String,
    /// Stop after this long without a record.
    #[arg(long, default_value = "3s", value_parser = humantime_serde::re::humantime::parse_duration)]
    idle: Duration,
    /// Print at most this many records per topic (the newest), 0 for all.
    #[arg(long, default_value_t = 0)]
    last: usize,
    /// Topics.
    #[arg(required = true)]
    topics: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", format!("cdc-tail-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let mut lines: Vec<(String, String)> = Vec::new();
    while let Ok(message) = tokio::time::timeout(args.idle, consumer.recv()).await {
        let Ok(m) = message else { continue };
        let text = |b: Option<&[u8]>| b.map_or("null".to_string(), |b| String::from_utf8_lossy(b).into_owned());
        let line =
            format!("{}[{}]@{} key={} value={}", m.topic(), m.partition(), m.offset(), text(m.key()), text(m.payload()));
        lines.push((m.topic().to_owned(), line));
    }
    for topic in &args.topics {
        let of_topic: Vec<&String> = lines.iter().filter(|(t, _)| t == topic).map(|(_, l)| l).collect();
        let skip = if args.last == 0 { 0 } else { of_topic.len().saturating_sub(args.last) };
        for line in &of_topic[skip..] {
            println!("{line}");
        }
    }
    Ok(())
}
