//! The container: a tar stream inside one zstd frame. Reading is streaming and capped at every
//! step, so a hostile file costs at most the limits, whatever its headers claim.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::rc::Rc;

use tar::EntryType;

use crate::check::allowed_path;
use crate::{BundleError, ReadLimits};

/// Tar block size: headers and data are padded to it.
const BLOCK: u64 = 512;
/// High enough for anything we write, low enough that a frame cannot make the decoder
/// allocate a huge window.
const WINDOW_LOG: u32 = 23;
const WINDOW_LOG_MAX: u32 = 24;
const LEVEL: i32 = 19;

/// Refuses to yield more than `limit` bytes in total, and never asks the decoder for more
/// than one byte past it, so decompression work stops at the limit.
struct Capped<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.count.get();
        if count > self.limit {
            return Err(io::Error::other("unpacked size limit exceeded"));
        }
        let room = usize::try_from((self.limit - count).saturating_add(1)).unwrap_or(usize::MAX);
        let len = buf.len().min(room);
        let n = self.inner.read(&mut buf[..len])?;
        self.count.set(count + n as u64);
        if self.count.get() > self.limit {
            return Err(io::Error::other("unpacked size limit exceeded"));
        }
        Ok(n)
    }
}

pub(crate) fn read(
    path: &Path,
    limits: ReadLimits,
) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    let io_error = |source| BundleError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    // A FIFO or device would block or never end.
    if !meta.is_file() {
        return Err(BundleError::NotAFile {
            path: path.to_owned(),
        });
    }
    if meta.len() > limits.max_compressed {
        return Err(BundleError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
            limit: limits.max_compressed,
        });
    }
    if meta.len() == 0 {
        return Err(corrupt(path, "the file is empty"));
    }
    // The take guards against a file that grows after the size check.
    let mut decoder = zstd::stream::read::Decoder::new(file.take(limits.max_compressed))
        .map_err(|e| corrupt(path, &e.to_string()))?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| corrupt(path, &e.to_string()))?;
    let count = Rc::new(Cell::new(0));
    let capped = Capped {
        inner: decoder,
        count: Rc::clone(&count),
        limit: limits.max_unpacked,
    };
    let mut archive = tar::Archive::new(capped);
    let result = read_entries(&mut archive, path, limits);
    let result = result.and_then(|files| {
        drain_trailer(archive.into_inner(), path).map_err(Failure::Io)?;
        Ok(files)
    });
    result.map_err(|failure| match failure {
        // Whatever the decoder or tar said, running past the cap is the real story.
        _ if count.get() > limits.max_unpacked => BundleError::UnpackedTooLarge {
            path: path.to_owned(),
            limit: limits.max_unpacked,
        },
        Failure::Io(e) => corrupt(path, &e.to_string()),
        Failure::Bundle(e) => e,
    })
}

enum Failure {
    Io(io::Error),
    Bundle(BundleError),
}

impl From<BundleError> for Failure {
    fn from(e: BundleError) -> Self {
        Failure::Bundle(e)
    }
}

fn corrupt(path: &Path, detail: &str) -> BundleError {
    BundleError::Corrupt {
        path: path.to_owned(),
        detail: detail.to_owned(),
    }
}

fn read_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    path: &Path,
    limits: ReadLimits,
) -> Result<BTreeMap<String, Vec<u8>>, Failure> {
    let mut files = BTreeMap::new();
    let mut entries_seen = 0usize;
    let mut unpacked = 0u64;
    // Raw: GNU long names and PAX headers come through as entries of their own (and are
    // refused), instead of being read into memory and applied by the tar crate.
    let entries = archive.entries().map_err(Failure::Io)?.raw(true);
    for entry in entries {
        let mut entry = entry.map_err(Failure::Io)?;
        entries_seen += 1;
        if entries_seen > limits.max_files {
            return Err(BundleError::TooManyFiles {
                path: path.to_owned(),
                limit: limits.max_files,
            }
            .into());
        }
        let raw_path = entry.path_bytes().into_owned();
        let name = entry_name(&raw_path)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            // Tools packing a directory tree emit these two; nothing else has a reason to.
            let trimmed = name.strip_suffix('/').unwrap_or(&name);
            if (trimmed == "sources" || trimmed == "wasm") && entry.size() == 0 {
                continue;
            }
            return Err(BundleError::NotRegularFile {
                entry: name,
                kind: "directory".into(),
            }
            .into());
        }
        if kind != EntryType::Regular {
            return Err(BundleError::NotRegularFile {
                entry: name,
                kind: kind_name(kind),
            }
            .into());
        }
        if !allowed_path(&name) {
            return Err(BundleError::UnexpectedPath { entry: name }.into());
        }
        if files.contains_key(&name) {
            return Err(BundleError::DuplicateEntry { entry: name }.into());
        }
        let size = entry.size();
        if size > limits.max_file {
            return Err(BundleError::FileTooLarge {
                entry: name,
                size,
                limit: limits.max_file,
            }
            .into());
        }
        unpacked = unpacked.saturating_add(size);
        if unpacked > limits.max_unpacked {
            return Err(BundleError::UnpackedTooLarge {
                path: path.to_owned(),
                limit: limits.max_unpacked,
            }
            .into());
        }
        let capacity = usize::try_from(size.min(1 << 20)).unwrap_or(0);
        let mut bytes = Vec::with_capacity(capacity);
        // The entry is already bounded by its header's size; the take makes the bound local.
        (&mut entry)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(Failure::Io)?;
        if bytes.len() as u64 != size {
            return Err(corrupt(path, &format!("entry {name:?} is cut short")).into());
        }
        files.insert(name, bytes);
    }
    Ok(files)
}

/// Reads past the end-of-archive marker to the end of the zstd frame, so that a file cut
/// short there (or with its checksum damaged) is still caught. Only zero padding may follow.
fn drain_trailer<R: Read>(mut reader: R, path: &Path) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(io::Error::other(format!(
                "{}: data follows the end of the tar archive",
                path.display()
            )));
        }
    }
}

/// Checks the raw header path before anything interprets it: what a later extractor might
/// resolve outside its directory is refused by name.
fn entry_name(raw: &[u8]) -> Result<String, BundleError> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let unsafe_path = |reason| BundleError::UnsafePath {
        entry: shown.clone(),
        reason,
    };
    let Ok(name) = std::str::from_utf8(raw) else {
        return Err(unsafe_path("not UTF-8"));
    };
    if name.is_empty() {
        return Err(unsafe_path("empty"));
    }
    if name.contains('\\') {
        return Err(unsafe_path("contains a backslash"));
    }
    if name.starts_with('/') {
        return Err(unsafe_path("absolute"));
    }
    if name.split('/').any(|part| part == "..") {
        return Err(unsafe_path("contains a `..` component"));
    }
    if name.chars().any(char::is_control) {
        return Err(unsafe_path("contains a control character"));
    }
    Ok(name.to_owned())
}

fn kind_name(kind: EntryType) -> String {
    match kind {
        EntryType::Symlink => "symbolic link".into(),
        EntryType::Link => "hard link".into(),
        EntryType::Char => "character device".into(),
        EntryType::Block => "block device".into(),
        EntryType::Fifo => "FIFO".into(),
        EntryType::Continuous => "contiguous file".into(),
        EntryType::GNULongName | EntryType::GNULongLink => "GNU long-name record".into(),
        EntryType::XHeader | EntryType::XGlobalHeader => "PAX extended header".into(),
        EntryType::GNUSparse => "sparse file".into(),
        other => format!("tar entry of type {:?}", char::from(other.as_byte())),
    }
}

/// The exact decompressed size of what [`write`] produces, pledged to zstd so that the frame
/// records it and a decoder can check it.
fn tar_size(files: &BTreeMap<String, Vec<u8>>) -> u64 {
    let data: u64 = files
        .values()
        .map(|bytes| BLOCK + (bytes.len() as u64).div_ceil(BLOCK) * BLOCK)
        .sum();
    // The end-of-archive marker: two zero blocks.
    data + 2 * BLOCK
}

pub(crate) fn write(
    files: &BTreeMap<String, Vec<u8>>,
    out: &Path,
    limits: ReadLimits,
) -> Result<(), BundleError> {
    let io_error = |action| {
        move |source| BundleError::Io {
            action,
            path: out.to_owned(),
            source,
        }
    };
    for (name, bytes) in files {
        if bytes.len() as u64 > limits.max_file {
            return Err(BundleError::FileTooLarge {
                entry: name.clone(),
                size: bytes.len() as u64,
                limit: limits.max_file,
            });
        }
    }
    let size = tar_size(files);
    if size > limits.max_unpacked {
        return Err(BundleError::UnpackedTooLarge {
            path: out.to_owned(),
            limit: limits.max_unpacked,
        });
    }
    if files.len() > limits.max_files {
        return Err(BundleError::TooManyFiles {
            path: out.to_owned(),
            limit: limits.max_files,
        });
    }
    // Same directory, so the final rename cannot cross file systems.
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".hypoforge-bundle-")
        .tempfile_in(dir)
        .map_err(io_error("create a temporary file next to"))?;
    let compressed = (|| -> io::Result<u64> {
        let mut encoder = zstd::stream::write::Encoder::new(BufWriter::new(temp.as_file()), LEVEL)?;
        encoder.include_checksum(true)?;
        encoder.window_log(WINDOW_LOG)?;
        encoder.set_pledged_src_size(Some(size))?;
        let mut builder = tar::Builder::new(encoder);
        for (name, bytes) in files {
            builder.append(&header(name, bytes.len() as u64)?, bytes.as_slice())?;
        }
        let mut writer = builder.into_inner()?.finish()?;
        writer.flush()?;
        let file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    })()
    .map_err(io_error("write"))?;
    if compressed > limits.max_compressed {
        return Err(BundleError::TooLarge {
            path: out.to_owned(),
            size: compressed,
            limit: limits.max_compressed,
        });
    }
    temp.persist(out)
        .map_err(|e| io_error("move the finished bundle to")(e.error))?;
    Ok(())
}

/// A header with nothing in it that varies between machines or runs, so the same inputs
/// give the same bytes.
fn header(name: &str, size: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(EntryType::Regular);
    header.set_cksum();
    Ok(header)
}
