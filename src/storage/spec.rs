//! [`StorageSpec`]: a store named by one string, so that an application (through
//! [`DbBuilder::url`](crate::DbBuilder::url)) or an operator (`durus copy`) chooses the
//! storage by configuration rather than by code.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::{FileStorage, MemoryStorage, Storage};
use crate::error::{Error, Result};
use crate::journal::JournalOptions;

/// Where a store lives, parsed from a URL-like string:
///
/// | spec | storage |
/// |---|---|
/// | `file:PATH`, or a bare `PATH` | the journal file at `PATH` ([`FileStorage`]) |
/// | `sqlite:PATH` | a SQLite file (`SqliteStorage`, feature `sqlite`) |
/// | `postgres://...`, `postgresql://...` | a PostgreSQL database (`PostgresStorage`, feature `postgres`); the whole URL is the connection string, e.g. `postgres://app@db.example.com/objects` or, on a Unix socket, `postgresql:///objects?host=/run/postgresql` |
/// | `durus://HOST:PORT` | a `durus serve` server over TCP (`ClientStorage`, feature `server`) |
/// | `durus+unix:PATH` | a `durus serve` server on a Unix-domain socket (feature `server`) |
/// | `memory:` | memory ([`MemoryStorage`]), gone with the process |
///
/// A spec names a kind this build was compiled without only to fail when it is
/// opened, with [`Error::Unsupported`] naming the cargo feature, so that the same
/// configuration parses everywhere.
///
/// ```
/// use durus::storage::StorageSpec;
///
/// let spec: StorageSpec = "sqlite:/var/lib/app/objects.sqlite".parse()?;
/// assert_eq!(spec, StorageSpec::Sqlite("/var/lib/app/objects.sqlite".into()));
/// assert_eq!("shop.durus".parse::<StorageSpec>()?, StorageSpec::File("shop.durus".into()));
/// assert!("ftp://example.com/x".parse::<StorageSpec>().is_err());
/// # Ok::<(), durus::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageSpec {
    /// A journal file.
    File(PathBuf),
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: the whole `postgres://` (or `postgresql://`) URL.
    Postgres(String),
    /// A server at `host:port`.
    Server(String),
    /// A server on a Unix-domain socket at this path.
    ServerUnix(PathBuf),
    /// Memory.
    Memory,
}

impl FromStr for StorageSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<StorageSpec> {
        let nonempty = |kind: &str, rest: &str| {
            if rest.is_empty() {
                Err(Error::Invalid(format!("the storage spec {s:?} names no {kind}")))
            } else {
                Ok(rest.to_string())
            }
        };
        if let Some(rest) = s.strip_prefix("file:") {
            return Ok(StorageSpec::File(nonempty("file", rest)?.into()));
        }
        if let Some(rest) = s.strip_prefix("sqlite:") {
            return Ok(StorageSpec::Sqlite(nonempty("file", rest)?.into()));
        }
        for scheme in ["postgres://", "postgresql://"] {
            if s.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty()) {
                return Ok(StorageSpec::Postgres(s.to_string()));
            }
        }
        if let Some(rest) = s.strip_prefix("durus+unix:") {
            return Ok(StorageSpec::ServerUnix(nonempty("socket path", rest)?.into()));
        }
        if let Some(rest) = s.strip_prefix("durus://") {
            let addr = nonempty("server address", rest.trim_end_matches('/'))?;
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(Error::Invalid(format!(
                    "the storage spec {s:?} needs a server address as durus://HOST:PORT"
                )));
            }
            return Ok(StorageSpec::Server(addr));
        }
        if s == "memory:" {
            return Ok(StorageSpec::Memory);
        }
        if s.is_empty() {
            return Err(Error::Invalid("an empty storage spec".into()));
        }
        // A scheme this build does not know is refused rather than taken for a file
        // name (a `postgres://...` journal file would surprise everyone). Windows drive
        // letters (`C:\...`) are one letter, so they stay paths.
        if let Some((scheme, _)) = s.split_once(':') {
            let looks_like_scheme = scheme.len() > 1
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.');
            if looks_like_scheme {
                return Err(Error::Invalid(format!(
                    "unknown storage scheme {scheme:?} in {s:?} (known: file:, sqlite:, \
                     postgres://, durus://, durus+unix:, memory:)"
                )));
            }
        }
        Ok(StorageSpec::File(s.into()))
    }
}

impl fmt::Display for StorageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageSpec::File(p) => write!(f, "file:{}", p.display()),
            StorageSpec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StorageSpec::Postgres(url) => f.write_str(url),
            StorageSpec::Server(a) => write!(f, "durus://{a}"),
            StorageSpec::ServerUnix(p) => write!(f, "durus+unix:{}", p.display()),
            StorageSpec::Memory => write!(f, "memory:"),
        }
    }
}

impl StorageSpec {
    /// Opens the storage. A journal file is opened with `journal`; a SQLite file takes
    /// its durability and sharing from it, a PostgreSQL database its durability (the
    /// rest of `journal` is the journal's own); a server and memory ignore it.
    ///
    /// # Errors
    ///
    /// What the storage's own open returns, or [`Error::Unsupported`] for a kind this
    /// build was compiled without.
    ///
    /// # Cancel safety
    ///
    /// As the storage's own open: dropping the future leaves nothing half-open.
    pub async fn open(&self, journal: &JournalOptions) -> Result<Arc<dyn Storage>> {
        match self {
            StorageSpec::File(path) => Ok(Arc::new(FileStorage::open(path.clone(), journal.clone()).await?)),
            StorageSpec::Memory => Ok(Arc::new(MemoryStorage::new())),
            StorageSpec::Sqlite(path) => open_sqlite(path, journal).await,
            StorageSpec::Postgres(url) => open_postgres(url, journal).await,
            StorageSpec::Server(_) | StorageSpec::ServerUnix(_) => open_server(self).await,
        }
    }

    /// The file this spec names, for the kinds that are files.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            StorageSpec::File(p) | StorageSpec::Sqlite(p) => Some(p),
            _ => None,
        }
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &std::path::Path, journal: &JournalOptions) -> Result<Arc<dyn Storage>> {
    let opts = super::SqliteOptions {
        durability: journal.durability,
        shared: journal.shared,
        ..super::SqliteOptions::default()
    };
    Ok(Arc::new(super::SqliteStorage::open(path, opts).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_: &std::path::Path, _: &JournalOptions) -> Result<Arc<dyn Storage>> {
    Err(Error::Unsupported {
        what: "a SQLite store (this build has no cargo feature `sqlite`)".into(),
    })
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, journal: &JournalOptions) -> Result<Arc<dyn Storage>> {
    let opts = super::PostgresOptions::default().durability(journal.durability);
    Ok(Arc::new(super::PostgresStorage::open(url, opts).await?))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str, _: &JournalOptions) -> Result<Arc<dyn Storage>> {
    Err(Error::Unsupported {
        what: "a PostgreSQL store (this build has no cargo feature `postgres`)".into(),
    })
}

/// Connects to the server a [`StorageSpec::Server`] or [`StorageSpec::ServerUnix`] names.
#[cfg(feature = "server")]
async fn open_server(spec: &StorageSpec) -> Result<Arc<dyn Storage>> {
    use crate::server::Address;
    let address = match spec {
        StorageSpec::Server(a) => Address::Tcp(a.clone()),
        StorageSpec::ServerUnix(p) => Address::Unix(p.clone()),
        other => return Err(Error::Internal(format!("{other} is not a server"))),
    };
    Ok(Arc::new(crate::client::ClientStorage::connect(&address).await?))
}

#[cfg(not(feature = "server"))]
async fn open_server(_: &StorageSpec) -> Result<Arc<dyn Storage>> {
    Err(Error::Unsupported {
        what: "a durus server (this build has no cargo feature `server`)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_prints_back() {
        for s in [
            "file:a/b.durus",
            "sqlite:x.sqlite",
            "postgres://app@db.example.com:5432/objects",
            "postgresql:///objects?host=/run/postgresql",
            "durus://127.0.0.1:2972",
            "durus://db.example.com:1",
            "durus+unix:/run/durus.sock",
            "memory:",
        ] {
            let spec: StorageSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
            assert_eq!(spec.to_string().parse::<StorageSpec>().unwrap(), spec);
        }
        assert_eq!(
            "durus://h:9/".parse::<StorageSpec>().unwrap(),
            StorageSpec::Server("h:9".into())
        );
        assert_eq!(
            "shop.durus".parse::<StorageSpec>().unwrap(),
            StorageSpec::File("shop.durus".into())
        );
        assert_eq!(
            "./x:y".parse::<StorageSpec>().unwrap(),
            StorageSpec::File("./x:y".into())
        );
        assert_eq!(
            r"C:\data\x.durus".parse::<StorageSpec>().unwrap(),
            StorageSpec::File(r"C:\data\x.durus".into())
        );
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        for s in [
            "",
            "file:",
            "sqlite:",
            "durus://",
            "durus://host",
            "durus://:2972",
            "durus://host:port",
            "durus://host:99999",
            "durus+unix:",
            "postgres://",
            "postgresql://",
            "ftp://x",
        ] {
            match s.parse::<StorageSpec>() {
                Err(Error::Invalid(why)) => assert!(!why.is_empty()),
                other => panic!("{s:?} gave {other:?}"),
            }
        }
    }
}
