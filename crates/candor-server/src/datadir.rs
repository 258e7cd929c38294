//! The data directory: the SQLite file, the operator's keys, and a lock that keeps two
//! processes from writing the same store.
//!
//! Keys live in files beside the database, never in it: a copy of the database alone
//! (a backup, a stolen disk image of the DB volume) reveals no identifier. The master
//! key may instead come from `CANDOR_MASTER_KEY` and the receipt-signing key from
//! `CANDOR_SIGNING_KEY` (64 hex characters each), which is how a deployment keeps them
//! in a secret manager, and how several nodes sharing one PostgreSQL share one identity.

use candor_core::crypto::MasterKey;
use candor_core::receipt::ReceiptSigner;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const MASTER_KEY_ENV: &str = "CANDOR_MASTER_KEY";
/// The receipt-signing key (64 hex characters), for nodes that share one database.
pub const SIGNING_KEY_ENV: &str = "CANDOR_SIGNING_KEY";

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(String),
    #[error("data directory {0} is in use by another Candor process (stop it first)")]
    Locked(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An exclusive lock on the data directory, held for the life of the process.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

pub fn lock(dir: &Path) -> Result<DirLock, DataDirError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join("candor.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

pub fn database_path(dir: &Path) -> PathBuf {
    dir.join("candor.db")
}

fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = OpenOptions::new();
        opts.create(true).write(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(contents).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        // Make the rename itself durable.
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    Ok(())
}

fn read_or_create_hex32(path: &Path, what: &str) -> Result<[u8; 32], DataDirError> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let mut b = [0u8; 32];
            hex::decode_to_slice(s.trim(), &mut b).map_err(|_| {
                DataDirError::Key(format!("{}: not a 32-byte hex {what}", path.display()))
            })?;
            Ok(b)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let b = MasterKey::generate();
            write_secret_file(path, hex::encode(b).as_bytes())?;
            tracing::info!(file = %path.display(), "generated {what}");
            Ok(b)
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// The master key and the receipt-signing key, created at first start.
pub fn load_keys(dir: &Path) -> Result<(MasterKey, ReceiptSigner), DataDirError> {
    let keys = dir.join("keys");
    fs::create_dir_all(&keys).map_err(io(&keys))?;
    let master = match std::env::var(MASTER_KEY_ENV) {
        Ok(hexkey) => MasterKey::from_hex(&hexkey)
            .map_err(|e| DataDirError::Key(format!("{MASTER_KEY_ENV}: {e}")))?,
        Err(_) => MasterKey::from_bytes(&read_or_create_hex32(
            &keys.join("master.key"),
            "master key",
        )?),
    };
    let signer = match std::env::var(SIGNING_KEY_ENV) {
        Ok(hexkey) => {
            let mut b = [0u8; 32];
            hex::decode_to_slice(hexkey.trim(), &mut b).map_err(|_| {
                DataDirError::Key(format!("{SIGNING_KEY_ENV}: not 64 hex characters"))
            })?;
            ReceiptSigner::from_bytes(&b)
        }
        Err(_) => ReceiptSigner::from_bytes(&read_or_create_hex32(
            &keys.join("receipt-signing.key"),
            "receipt signing key",
        )?),
    };
    Ok((master, signer))
}
