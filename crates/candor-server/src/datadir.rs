//! The data directory: the SQLite file, the operator's keys, and a lock that keeps two
//! processes from writing the same store.
//!
//! Keys live in files beside the database, never in it: a copy of the database alone
//! (a backup, a stolen disk image of the DB volume) reveals no identifier. The master
//! key may instead come from `CANDOR_MASTER_KEY` and the receipt-signing key from
//! `CANDOR_SIGNING_KEY` (64 hex characters each), which is how a deployment keeps them
//! in a secret manager, and how several nodes sharing one PostgreSQL share one identity.
//!
//! Directories are created owner-only (0700), key files with `create_new` (never over
//! an existing one) and mode 0600, and a key file or key directory others can read is
//! refused at start, as ssh refuses an exposed private key. Commands that only work on
//! existing data ([`Mode::Existing`]) never create a directory or a key.

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
    #[error("{0} does not exist or holds no Candor data (no keys, no database): check --data-dir; this command never creates one")]
    Missing(PathBuf),
    #[error("{path} is {what} (mode {mode:o}): keys must be readable by their owner only; run `chmod {fix} {path}`")]
    Exposed {
        path: PathBuf,
        what: &'static str,
        mode: u32,
        fix: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether a command may create what is missing (`candor serve` at first start) or
/// works only on data that exists (`ledger verify`, `export`, `import`, `keys`): those
/// fail on a missing or empty data directory instead of making one with new keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Create,
    Existing,
}

/// An exclusive lock on the data directory, held for the life of the process (none
/// when the directory holds nothing this process uses: PostgreSQL with both keys from
/// the environment, for a command on existing data).
#[derive(Debug)]
pub struct DirLock {
    _file: Option<File>,
}

/// Whether both keys come from the environment.
fn keys_from_env() -> bool {
    std::env::var_os(MASTER_KEY_ENV).is_some() && std::env::var_os(SIGNING_KEY_ENV).is_some()
}

/// Creates `dir` (owner-only) when it is missing.
fn create_private_dir(dir: &Path) -> Result<(), DataDirError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(io(dir))
}

/// Locks the data directory. `sqlite`: the database is the file in it. With
/// [`Mode::Existing`] the directory must already hold Candor's data (its keys, or the
/// SQLite file), and nothing is created in a directory that does not.
pub fn lock(dir: &Path, mode: Mode, sqlite: bool) -> Result<DirLock, DataDirError> {
    match mode {
        Mode::Create => create_private_dir(dir)?,
        Mode::Existing if !sqlite && keys_from_env() => return Ok(DirLock { _file: None }),
        Mode::Existing if !dir.join("keys").is_dir() && !database_path(dir).is_file() => {
            return Err(DataDirError::Missing(dir.to_owned()))
        }
        Mode::Existing => {}
    }
    let path = dir.join("candor.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: Some(file) }),
        Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

pub fn database_path(dir: &Path) -> PathBuf {
    dir.join("candor.db")
}

/// Refuses a key file or key directory that others can read (or, for the directory,
/// enter), as ssh does: a key anyone on the machine can copy protects nothing.
fn check_private(path: &Path, dir: bool) -> Result<(), DataDirError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(DataDirError::Exposed {
                path: path.to_owned(),
                what: if dir {
                    "a key directory others can open"
                } else {
                    "a key file others can read"
                },
                mode,
                fix: if dir { "700" } else { "600" },
            });
        }
    }
    let _ = (path, dir);
    Ok(())
}

/// Writes a new secret file, owner-only, refusing to replace anything (`create_new`):
/// a key is never overwritten by accident.
fn write_new_secret(path: &Path, contents: &[u8]) -> Result<(), DataDirError> {
    {
        let mut opts = OpenOptions::new();
        opts.create_new(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io(path))?;
        f.write_all(contents).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    sync_dir(path)
}

/// Makes a rename or a new file in `path`'s directory durable.
fn sync_dir(path: &Path) -> Result<(), DataDirError> {
    if let Some(parent) = path.parent() {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io(parent))?;
    }
    Ok(())
}

fn read_hex32(path: &Path, what: &str) -> Result<Option<[u8; 32]>, DataDirError> {
    match fs::read_to_string(path) {
        Ok(s) => {
            check_private(path, false)?;
            let mut b = [0u8; 32];
            hex::decode_to_slice(s.trim(), &mut b).map_err(|_| {
                DataDirError::Key(format!("{}: not a 32-byte hex {what}", path.display()))
            })?;
            Ok(Some(b))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// The operator's keys, and the key files this start generated (written, but removed
/// again by [`Keys::discard_fresh`] if the database then refuses them).
pub struct Keys {
    pub master: MasterKey,
    pub signer: ReceiptSigner,
    fresh: Vec<PathBuf>,
}

impl Keys {
    /// Removes the key files this start generated: the database holds data written
    /// under other keys, so these must not linger and be mistaken for the real ones.
    pub fn discard_fresh(&mut self) {
        for p in self.fresh.drain(..) {
            let _ = fs::remove_file(&p);
        }
    }

    /// Whether this start generated any key.
    pub fn generated(&self) -> bool {
        !self.fresh.is_empty()
    }
}

pub const SIGNING_KEY_FILE: &str = "receipt-signing.key";
/// The next signing key while a rotation is under way (`candor keys rotate-signing`).
pub const NEXT_SIGNING_KEY_FILE: &str = "receipt-signing.key.next";

fn key_or_new(
    path: &Path,
    what: &str,
    mode: Mode,
    fresh: &mut Vec<PathBuf>,
) -> Result<[u8; 32], DataDirError> {
    if let Some(b) = read_hex32(path, what)? {
        return Ok(b);
    }
    if mode == Mode::Existing {
        return Err(DataDirError::Key(format!(
            "{} is missing (and its variable is not set): this command does not make new keys; point --data-dir at the data directory, or restore keys/",
            path.display()
        )));
    }
    let b = MasterKey::generate();
    write_new_secret(path, hex::encode(b).as_bytes())?;
    tracing::info!(file = %path.display(), "generated {what}");
    fresh.push(path.to_owned());
    Ok(b)
}

/// The master key and the receipt-signing key. With [`Mode::Create`] a missing one is
/// generated (first start); whether that was right is for the database to say
/// (`candor_store::plan::keys`): against data written under other keys the open is
/// refused and the new files removed.
pub fn load_keys(dir: &Path, mode: Mode) -> Result<Keys, DataDirError> {
    let keys = dir.join("keys");
    let from_env = |var: &str| std::env::var(var).ok();
    let (master_env, signing_env) = (from_env(MASTER_KEY_ENV), from_env(SIGNING_KEY_ENV));
    if master_env.is_none() || signing_env.is_none() {
        match mode {
            Mode::Create => create_private_dir(&keys)?,
            Mode::Existing if !keys.is_dir() => return Err(DataDirError::Missing(dir.to_owned())),
            Mode::Existing => {}
        }
        check_private(&keys, true)?;
    }
    let mut fresh = Vec::new();
    let master = match master_env {
        Some(hexkey) => MasterKey::from_hex(&hexkey)
            .map_err(|e| DataDirError::Key(format!("{MASTER_KEY_ENV}: {e}")))?,
        None => MasterKey::from_bytes(&key_or_new(
            &keys.join("master.key"),
            "master key",
            mode,
            &mut fresh,
        )?),
    };
    let signer = match signing_env {
        Some(hexkey) => {
            let mut b = [0u8; 32];
            hex::decode_to_slice(hexkey.trim(), &mut b).map_err(|_| {
                DataDirError::Key(format!("{SIGNING_KEY_ENV}: not 64 hex characters"))
            })?;
            ReceiptSigner::from_bytes(&b)
        }
        None => ReceiptSigner::from_bytes(&key_or_new(
            &keys.join(SIGNING_KEY_FILE),
            "receipt signing key",
            mode,
            &mut fresh,
        )?),
    };
    Ok(Keys {
        master,
        signer,
        fresh,
    })
}

/// The key a rotation left in `keys/receipt-signing.key.next`, if any.
pub fn next_signing_key(dir: &Path) -> Result<Option<ReceiptSigner>, DataDirError> {
    Ok(read_hex32(
        &dir.join("keys").join(NEXT_SIGNING_KEY_FILE),
        "next signing key",
    )?
    .map(|b| ReceiptSigner::from_bytes(&b)))
}

/// Writes the next signing key beside the current one (the first step of a rotation).
pub fn write_next_signing_key(dir: &Path, key: &ReceiptSigner) -> Result<(), DataDirError> {
    write_new_secret(
        &dir.join("keys").join(NEXT_SIGNING_KEY_FILE),
        hex::encode(key.to_bytes()).as_bytes(),
    )
}

/// Makes the next signing key the current one (the last step of a rotation, once the
/// database records the hand-over): one atomic rename, made durable. The old private
/// key is gone with it: records it signed stay verifiable by its public key, which the
/// database's key ring keeps.
pub fn promote_next_signing_key(dir: &Path) -> Result<(), DataDirError> {
    let keys = dir.join("keys");
    let next = keys.join(NEXT_SIGNING_KEY_FILE);
    let current = keys.join(SIGNING_KEY_FILE);
    fs::rename(&next, &current).map_err(io(&current))?;
    sync_dir(&current)
}
