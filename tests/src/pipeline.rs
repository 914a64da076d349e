//! The source side of a pipeline per test: three scratch databases (one per service server) with the services'
//! schemas from `migrations/`, and a capture (in-process) publishing their changes under a topic prefix of its own.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use cdc_capture::config::{Config as CaptureConfig, Secret, SnapshotMode, SourceConfig};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::{repo_root, stack, unique_name, ScratchDb};

/// Three migrated scratch databases and the capture streaming them.
pub struct Sources {
    pub users: ScratchDb,
    pub catalog: ScratchDb,
    pub orders: ScratchDb,
    /// Topic prefix of this capture: topics are `<prefix>.<scratch database>.<table>`.
    pub prefix: String,
    /// A directory for this test's files.
    pub dir: PathBuf,
    capture: CancellationToken,
    capture_task: tokio::task::JoinHandle<()>,
    capture_settings: cdc_capture::config::Settings,
}

fn spawn_capture(settings: &cdc_capture::config::Settings) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let token = CancellationToken::new();
    let (settings, stop) = (settings.clone(), token.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = cdc_capture::run(settings, stop).await {
            eprintln!("capture stopped: {e:#}");
        }
    });
    (token, task)
}

/// Applies `migrations/<service>/*.sql` in order.
pub async fn migrate(db: &ScratchDb, service: &str) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("migrations").join(service))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for f in files {
        db.exec(&std::fs::read_to_string(&f)?).await?;
    }
    Ok(())
}

impl Sources {
    /// Databases named after `name`, migrated, with a capture streaming them (tables matching `exclude` left out).
    pub async fn start(name: &str, exclude: &[&str]) -> Result<Sources> {
        Self::start_with(name, exclude, |_| {}).await
    }

    /// [`Sources::start`] with the capture's configuration adjusted by `adjust` before it starts.
    pub async fn start_with(name: &str, exclude: &[&str], adjust: impl FnOnce(&mut CaptureConfig)) -> Result<Sources> {
        let users = ScratchDb::create("USERS", &format!("{name}_users")).await?;
        let catalog = ScratchDb::create("CATALOG", &format!("{name}_catalog")).await?;
        let orders = ScratchDb::create("ORDERS", &format!("{name}_orders")).await?;
        migrate(&users, "users").await?;
        migrate(&catalog, "catalog").await?;
        migrate(&orders, "orders").await?;
        let prefix = unique_name(name);
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)?;
        let mut config = CaptureConfig {
            topic_prefix: prefix.clone(),
            state_dir: dir.join("capture-state"),
            listen: "127.0.0.1:0".parse()?,
            checkpoint_interval: Duration::from_millis(50),
            ..CaptureConfig::default()
        };
        config.kafka.brokers = stack().var("KAFKA_BROKERS").to_owned();
        let base: u32 = rand::rng().random_range(100_000..4_000_000);
        for (i, (source, db)) in [("users", &users), ("catalog", &catalog), ("orders", &orders)].into_iter().enumerate() {
            config.sources.push(SourceConfig {
                name: source.into(),
                url: Secret::new(db.capture_url()),
                server_id: base + i as u32,
                include: vec![],
                exclude: exclude.iter().map(|e| e.to_string()).collect(),
                snapshot: SnapshotMode::Initial,
                snapshot_chunk_rows: 5000,
                heartbeat_interval: Duration::from_millis(500),
                statement_dml: Default::default(),
            });
        }
        adjust(&mut config);
        let capture_settings = config.validate()?;
        let (capture, capture_task) = spawn_capture(&capture_settings);
        Ok(Sources { users, catalog, orders, prefix, dir, capture, capture_task, capture_settings })
    }

    /// Kills the capture: its task is dropped where it stands, without a final checkpoint or flush (as a crash
    /// would leave it; its replication connections close with the task).
    pub async fn kill_capture(&mut self) {
        self.capture_task.abort();
        let _ = (&mut self.capture_task).await;
    }

    /// Starts the capture again (after [`Sources::kill_capture`]); it resumes from its saved checkpoints.
    pub fn restart_capture(&mut self) {
        (self.capture, self.capture_task) = spawn_capture(&self.capture_settings);
    }

    /// Stops the capture (waiting until its connections are closed: an open snapshot transaction would block the
    /// DROP) and drops the databases.
    pub async fn finish(self) -> Result<()> {
        self.capture.cancel();
        if tokio::time::timeout(Duration::from_secs(30), self.capture_task).await.is_err() {
            eprintln!("the capture did not stop within 30 s of its cancellation; dropping its databases anyway");
        }
        self.users.drop_db().await?;
        self.catalog.drop_db().await?;
        self.orders.drop_db().await
    }
}
