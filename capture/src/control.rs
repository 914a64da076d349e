//! Operator control of the sources: pause and resume, and the restart of a failed source after a skip.
//!
//! # Pause
//!
//! A paused source stops at once, as at a shutdown of that source alone: the reader stops (a snapshot resumes from
//! its last acknowledged chunk), the writer sends what was read and saves the checkpoint of what the broker
//! acknowledged, and the binlog connection is closed. So no read deadline can fire, and no heartbeats are
//! published while paused (consumers see the source's lag grow, as with any stopped capture). A pause inside a
//! transaction sends that transaction's rows again after the resume, with the same coordinates, as after a restart.
//! Resuming starts the source again from its checkpoint.
//!
//! `/health` stays 200 for a paused source (an operator's decision is not a failure); its entry says `paused` with
//! who, since when and why, `warnings` lists it, and `cdc_capture_source_paused` is 1. The server may purge binlog
//! files meanwhile: the retention headroom keeps counting down and warns as usual.
//!
//! A pause survives a restart of the capture: it is kept in `<state_dir>/<source>.paused` (written atomically, and
//! recorded in the history, [`crate::history`]) until `capture resume`. A capture that is not running can be paused
//! or resumed too: the command then edits that file under the state_dir lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::checkpoint::{write_atomically, CheckpointError};
use crate::config::Settings;
use crate::history::{self, Entry};
use crate::transform::now_ms;

/// Who paused a source, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// Who.
    pub actor: String,
    /// Why (may be empty).
    #[serde(default)]
    pub reason: String,
    /// Since when (ms since the Unix epoch).
    pub since_ms: i64,
}

impl Pause {
    /// For the source's state: `by ops since 2026-01-02T03:04:05Z: maintenance`.
    pub fn describe(&self) -> String {
        let since = humantime_serde::re::humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.since_ms.max(0) as u64),
        );
        match self.reason.as_str() {
            "" => format!("by {} since {since}", self.actor),
            reason => format!("by {} since {since}: {reason}", self.actor),
        }
    }
}

/// The pause file of `source`.
pub fn pause_path(state_dir: &Path, source: &str) -> PathBuf {
    state_dir.join(format!("{source}.paused"))
}

/// The recorded pause of `source`, if any.
pub fn load_pause(state_dir: &Path, source: &str) -> Result<Option<Pause>, CheckpointError> {
    let path = pause_path(state_dir, source);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| CheckpointError::Corrupt {
            path,
            reason: format!("{e}; it records that the source is paused: delete it to resume the source"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Io { path, source }),
    }
}

/// Records (`Some`) or clears (`None`) the pause of `source`, with a history entry first.
pub fn store_pause(state_dir: &Path, source: &str, pause: Option<&Pause>, actor: &str, reason: &str) -> Result<(), CheckpointError> {
    let entry = Entry {
        ts_ms: now_ms(),
        action: if pause.is_some() { "pause" } else { "resume" }.into(),
        actor: actor.to_owned(),
        reason: reason.to_owned(),
        from: None,
        to: None,
        skipped_rows: None,
        undecodable: Vec::new(),
        replay: None,
    };
    history::append(state_dir, source, &entry)?;
    let path = pause_path(state_dir, source);
    match pause {
        Some(pause) => {
            let bytes = serde_json::to_vec(pause).expect("a pause serializes");
            write_atomically(&path, &state_dir.join(format!(".{source}.paused.tmp")), &bytes)
        }
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CheckpointError::Io { path, source }),
        },
    }
}

/// Why a control request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No source has this name.
    #[error("no source {0:?} in this capture's configuration")]
    UnknownSource(String),
    /// The request does not fit the source's state.
    #[error("{0}")]
    Conflict(String),
    /// The state directory cannot be written.
    #[error(transparent)]
    State(#[from] CheckpointError),
}

/// The control state of a running capture, shared by the HTTP endpoints and the sources.
pub struct Control {
    /// The capture's settings (state_dir, sources).
    pub settings: Arc<Settings>,
    /// The configuration file the capture was started with, for the commands it prints.
    pub config_path: Option<PathBuf>,
    /// Each source's pause, watched by its pipeline.
    pauses: HashMap<String, watch::Sender<Option<Pause>>>,
    /// Sources to start again (after a skip), to the supervisor.
    restarts: mpsc::UnboundedSender<String>,
}

impl Control {
    /// The control of `settings`' sources, with the pauses recorded in the state directory; and the receiver of
    /// restart requests.
    pub fn new(
        settings: Arc<Settings>,
        config_path: Option<PathBuf>,
    ) -> Result<(Arc<Control>, mpsc::UnboundedReceiver<String>), CheckpointError> {
        let mut pauses = HashMap::new();
        for source in &settings.sources {
            let pause = load_pause(&settings.state_dir, &source.name)?;
            if let Some(pause) = &pause {
                tracing::warn!(source = %source.name, paused = %pause.describe(), "source paused: it starts only at `capture resume`");
            }
            pauses.insert(source.name.clone(), watch::channel(pause).0);
        }
        let (restarts, rx) = mpsc::unbounded_channel();
        Ok((Arc::new(Control { settings, config_path, pauses, restarts }), rx))
    }

    /// The pause of `source`, to watch.
    pub fn watch(&self, source: &str) -> Result<watch::Receiver<Option<Pause>>, ControlError> {
        Ok(self.sender(source)?.subscribe())
    }

    fn sender(&self, source: &str) -> Result<&watch::Sender<Option<Pause>>, ControlError> {
        self.pauses.get(source).ok_or_else(|| ControlError::UnknownSource(source.to_owned()))
    }

    /// Whether `source` is paused.
    pub fn paused(&self, source: &str) -> Result<Option<Pause>, ControlError> {
        Ok(self.sender(source)?.borrow().clone())
    }

    /// Pauses `source`: recorded durably, then the source stops.
    pub fn pause(&self, source: &str, actor: &str, reason: &str) -> Result<Pause, ControlError> {
        let sender = self.sender(source)?;
        if let Some(pause) = sender.borrow().clone() {
            return Err(ControlError::Conflict(format!("source {source} is already paused {}", pause.describe())));
        }
        let pause = Pause { actor: actor.to_owned(), reason: reason.to_owned(), since_ms: now_ms() };
        store_pause(&self.settings.state_dir, source, Some(&pause), actor, reason)?;
        tracing::warn!(source, actor, reason, "source paused by an operator");
        sender.send_replace(Some(pause.clone()));
        Ok(pause)
    }

    /// Resumes `source`: it starts again from its checkpoint.
    pub fn resume(&self, source: &str, actor: &str, reason: &str) -> Result<(), ControlError> {
        let sender = self.sender(source)?;
        if sender.borrow().is_none() {
            return Err(ControlError::Conflict(format!("source {source} is not paused")));
        }
        store_pause(&self.settings.state_dir, source, None, actor, reason)?;
        tracing::warn!(source, actor, reason, "source resumed by an operator");
        sender.send_replace(None);
        Ok(())
    }

    /// Asks the supervisor to start `source` again (it has stopped with a definite error).
    pub fn restart(&self, source: &str) -> Result<(), ControlError> {
        self.sender(source)?;
        self.restarts
            .send(source.to_owned())
            .map_err(|_| ControlError::Conflict("the capture is shutting down".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SnapshotMode, SourceConfig, StatementDml};

    fn settings(dir: &Path) -> Arc<Settings> {
        let source = SourceConfig {
            name: "src".into(),
            url: crate::config::Secret::new("mysql://u:p@127.0.0.1:3306/db"),
            server_id: 7,
            include: vec![],
            exclude: vec![],
            snapshot: SnapshotMode::Initial,
            snapshot_chunk_rows: 10,
            heartbeat_interval: std::time::Duration::from_secs(1),
            statement_dml: StatementDml::Error,
        };
        let config = Config { state_dir: dir.to_path_buf(), sources: vec![source], ..Config::default() };
        Arc::new(config.validate().unwrap())
    }

    #[test]
    fn a_pause_is_recorded_survives_a_restart_and_a_resume_clears_it() {
        let dir = std::env::temp_dir().join(format!("cdc-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (control, _rx) = Control::new(settings(&dir), None).unwrap();
        let mut watch = control.watch("src").unwrap();
        assert_eq!(control.paused("src").unwrap(), None);
        control.pause("src", "ops", "downstream maintenance").unwrap();
        assert!(watch.has_changed().unwrap());
        assert_eq!(watch.borrow_and_update().as_ref().map(|p| p.actor.as_str()), Some("ops"));
        let again = control.pause("src", "ops", "").unwrap_err().to_string();
        assert!(again.starts_with("source src is already paused by ops since "), "{again}");
        assert!(again.ends_with(": downstream maintenance"), "{again}");
        assert!(matches!(control.pause("nope", "ops", ""), Err(ControlError::UnknownSource(_))));

        // A new capture on the same state_dir starts paused.
        let (restarted, _rx) = Control::new(settings(&dir), None).unwrap();
        assert_eq!(restarted.paused("src").unwrap().map(|p| p.reason), Some("downstream maintenance".into()));
        restarted.resume("src", "ops2", "done").unwrap();
        assert_eq!(restarted.paused("src").unwrap(), None);
        assert!(restarted.resume("src", "ops2", "").unwrap_err().to_string().contains("is not paused"));
        assert!(!pause_path(&dir, "src").exists());
        let actions: Vec<_> = history::read(&dir, "src").unwrap().into_iter().map(|e| (e.action, e.actor)).collect();
        assert_eq!(actions, [("pause".to_string(), "ops".to_string()), ("resume".into(), "ops2".into())]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
