//! The state directory's lock: one capture at a time per `state_dir`. Two captures on one directory would both
//! write the same checkpoints, each overwriting the other's progress with its own, so the second refuses to start.
//!
//! The lock is an exclusive `flock` on `<state_dir>/capture.lock`, held for the life of the process; the kernel
//! releases it when the process ends, however it ends (SIGKILL included), so a stale file never blocks a start.
//! The file holds the holder's pid, for the message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside `state_dir`.
pub const LOCK_FILE: &str = "capture.lock";

/// Holds the lock until dropped (at the end of the process).
#[derive(Debug)]
pub struct StateDirLock {
    /// The locked file; the lock goes with it.
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "state_dir {dir} is in use by another capture ({holder} holds the lock on {path}); stop that capture first, \
         or give this one a state_dir of its own"
    )]
    Held { dir: PathBuf, path: PathBuf, holder: String },
    /// The directory or the file cannot be used.
    #[error("cannot lock {path}: {error}; state_dir must be a writable directory")]
    Io { path: PathBuf, error: std::io::Error },
}

impl StateDirLock {
    /// Takes the lock of `state_dir` (created if missing), or fails at once if another process holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateDirLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |error| LockError::Io { path: path.clone(), error };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("process {pid}"),
                };
                return Err(LockError::Held { dir: state_dir.to_path_buf(), path, holder });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).and_then(|()| file.flush()).map_err(io)?;
        Ok(StateDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_state_dir_is_refused_until_the_first_is_released() {
        let dir = std::env::temp_dir().join(format!("cdc-lock-{}-{}", std::process::id(), line!()));
        let first = StateDirLock::acquire(&dir).expect("the first lock");
        let error = StateDirLock::acquire(&dir).expect_err("the directory is locked");
        let message = error.to_string();
        assert!(message.contains("in use by another capture"), "{message}");
        assert!(message.contains(&format!("process {}", std::process::id())), "names the holder: {message}");
        assert!(message.contains(&dir.join(LOCK_FILE).display().to_string()), "{message}");
        drop(first);
        let again = StateDirLock::acquire(&dir).expect("free again once released");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
