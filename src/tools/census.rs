//! [`census`]: how many objects of each type a journal holds and how many bytes they
//! take (Durus's `get_census`), and [`TypeName`], the type a record's data names.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::error::Result;
use crate::journal::{Journal, JournalOptions};
use crate::record::Oid;

/// The type a record's data names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TypeName {
    /// A record written by durus's object layer: the type name it starts with.
    Durus(String),
    /// A record imported from Python Durus: the class of the pickle it starts with, as
    /// `module.name`.
    Pickle(String),
    /// Data in neither form.
    Unknown,
}

impl TypeName {
    /// The type named by the record data `data`.
    pub fn of(data: &[u8]) -> TypeName {
        if let Ok(name) = crate::object::peek_type_name(data) {
            return TypeName::Durus(name.to_owned());
        }
        match pickled_class(data) {
            Some(class) => TypeName::Pickle(class),
            None => TypeName::Unknown,
        }
    }

    /// The name as the census shows it: the type or class name, or `(unknown)`.
    pub fn as_str(&self) -> &str {
        match self {
            TypeName::Durus(n) | TypeName::Pickle(n) => n,
            TypeName::Unknown => "(unknown)",
        }
    }

    /// Which encoding the record is in: `durus`, `pickle` or `unknown`.
    pub fn encoding(&self) -> &'static str {
        match self {
            TypeName::Durus(_) => "durus",
            TypeName::Pickle(_) => "pickle",
            TypeName::Unknown => "unknown",
        }
    }
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of the pickle `data` starts with: an optional `PROTO n` (`0x80 n`), then
/// `GLOBAL` (`c`), `module\n` and `name\n`, as Durus writes an object's class.
fn pickled_class(data: &[u8]) -> Option<String> {
    let rest = match data {
        [0x80, _, rest @ ..] => rest,
        rest => rest,
    };
    let rest = rest.strip_prefix(b"c")?;
    let mut lines = rest.splitn(3, |&b| b == b'\n');
    let module = lines.next()?;
    let name = lines.next()?;
    // Both lines must end in a newline: a third piece exists.
    lines.next()?;
    let printable = |s: &[u8]| !s.is_empty() && s.iter().all(|b| b.is_ascii_graphic());
    if !printable(module) || !printable(name) {
        return None;
    }
    Some(format!(
        "{}.{}",
        String::from_utf8_lossy(module),
        String::from_utf8_lossy(name)
    ))
}

/// The objects of one type, as [`census`] counts them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TypeCount {
    /// The type.
    pub name: TypeName,
    /// Objects whose newest record names it.
    pub objects: u64,
    /// Bytes of those records: their data and 8 per reference.
    pub bytes: u64,
}

/// What [`census`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Census {
    /// One entry per type, the most bytes first (then by name).
    pub types: Vec<TypeCount>,
    /// Objects in all.
    pub objects: u64,
    /// Bytes in all.
    pub bytes: u64,
}

/// Oids loaded per batch.
const BATCH: usize = 4096;

/// Opens the journal at `path` read-only (beside a writer too).
pub(crate) fn open_read_only(path: &Path) -> Result<Journal> {
    Journal::open(
        path,
        JournalOptions {
            read_only: true,
            ..JournalOptions::default()
        },
    )
}

/// Counts the objects of the journal at `path` by type: the newest record of every
/// oid, read without the write lock.
///
/// # Errors
///
/// What opening a journal read-only and reading it can fail with: [`crate::Error::Format`],
/// [`crate::Error::Version`], [`crate::Error::Corrupt`], I/O errors.
pub fn census(path: impl AsRef<Path>) -> Result<Census> {
    census_with(path, &|_, _| {})
}

/// [`census`], telling `progress` after each batch of objects how many it has counted
/// and how many there are in all.
///
/// # Errors
///
/// As [`census`].
pub fn census_with(path: impl AsRef<Path>, progress: &dyn Fn(u64, u64)) -> Result<Census> {
    let j = open_read_only(path.as_ref())?;
    let oids: Vec<Oid> = j.oids()?;
    let mut by: HashMap<TypeName, (u64, u64)> = HashMap::new();
    let mut done = 0;
    for chunk in oids.chunks(BATCH) {
        done += chunk.len() as u64;
        progress(done, oids.len() as u64);
        for loaded in j.load_many(chunk, None)?.into_iter().flatten() {
            let r = &loaded.record;
            let e = by.entry(TypeName::of(&r.data)).or_default();
            e.0 += 1;
            e.1 += r.data.len() as u64 + 8 * r.refs.len() as u64;
        }
    }
    j.close()?;
    let mut types: Vec<TypeCount> = by
        .into_iter()
        .map(|(name, (objects, bytes))| TypeCount { name, objects, bytes })
        .collect();
    types.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    Ok(Census {
        objects: types.iter().map(|t| t.objects).sum(),
        bytes: types.iter().map(|t| t.bytes).sum(),
        types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_of_each_encoding() {
        assert_eq!(
            TypeName::of(b"\x80\x02cdurus.persistent_dict\nPersistentDict\nq\x01.}q\x02"),
            TypeName::Pickle("durus.persistent_dict.PersistentDict".into())
        );
        assert_eq!(
            TypeName::of(b"cshop\nItem\n."),
            TypeName::Pickle("shop.Item".into())
        );
        assert_eq!(TypeName::of(b"cshop\nItem"), TypeName::Unknown);
        assert_eq!(TypeName::of(b"c\nItem\n"), TypeName::Unknown);
        assert_eq!(TypeName::of(b"hello"), TypeName::Unknown);
        assert_eq!(TypeName::of(b""), TypeName::Unknown);
        assert_eq!(TypeName::of(b"\xD1\x03abc\xa0"), TypeName::Durus("abc".into()));
        assert_eq!(TypeName::Unknown.to_string(), "(unknown)");
    }
}
