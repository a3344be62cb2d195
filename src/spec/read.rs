//! Reading a file a spec names (or the spec itself) without trusting it: only a regular file is
//! opened, its size is capped before a byte is read, and a refusal never quotes what the file
//! holds, because a mistyped path can point at a file of secrets (`/proc/self/environ`, `.env`).

use std::fmt;
use std::io::Read;
use std::path::Path;

/// Largest spec file read: far above any hand-written spec, far below what would exhaust memory.
pub(crate) const MAX_SPEC_FILE: u64 = 64 << 20;

/// Why a file was not read. Its `Display` is a clause to follow "cannot read `PATH`: " and never
/// contains any of the file's bytes.
#[derive(Debug)]
pub(crate) enum ReadProblem {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// A directory, a device, a FIFO or a socket: reading it would block, never end or mean
    /// nothing.
    NotRegular(&'static str),
    /// Larger than the cap, known from its metadata before reading.
    TooLarge { size: u64, cap: u64 },
    /// Reports a size of 0 yet has content: a `/proc` or `/sys` file, generated on reading.
    Generated,
    /// Holds NUL bytes.
    Binary,
    /// Not valid UTF-8; the 1-based line and column (in characters) of the first bad byte.
    NotUtf8 { line: usize, column: usize },
}

impl fmt::Display for ReadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadProblem::Io(err) => write!(f, "{err}"),
            ReadProblem::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            ReadProblem::TooLarge { size, cap } => write!(
                f,
                "it is {size} bytes, more than the {} allowed",
                human_size(*cap)
            ),
            ReadProblem::Generated => write!(
                f,
                "it reports a size of 0 but is not empty (a /proc or /sys file), not a regular file"
            ),
            ReadProblem::Binary => write!(f, "it is binary (it holds NUL bytes), not text"),
            ReadProblem::NotUtf8 { line, column } => {
                write!(
                    f,
                    "it is not UTF-8 text: the first invalid byte is at line {line}, column {column} (save it as UTF-8)"
                )
            }
        }
    }
}

impl ReadProblem {
    /// As an I/O error, for callers whose error type carries one.
    pub(crate) fn into_io_error(self) -> std::io::Error {
        match self {
            ReadProblem::Io(err) => err,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn file_kind(file_type: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        None
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_fifo() {
        Some("a FIFO")
    } else if file_type.is_socket() {
        Some("a socket")
    } else if file_type.is_char_device() || file_type.is_block_device() {
        Some("a device")
    } else {
        Some("not a file")
    }
}

/// Read a regular UTF-8 text file of at most `cap` bytes.
///
/// The type is checked on the path before opening (opening a FIFO blocks until a writer comes)
/// and again on the open handle (the path may have changed in between); the size is checked
/// from the metadata and enforced while reading, since some files report a size they do not have.
pub(crate) fn read_text_capped(path: &Path, cap: u64) -> Result<String, ReadProblem> {
    let before = std::fs::metadata(path).map_err(ReadProblem::Io)?;
    if let Some(kind) = file_kind(before.file_type()) {
        return Err(ReadProblem::NotRegular(kind));
    }
    let file = std::fs::File::open(path).map_err(ReadProblem::Io)?;
    let meta = file.metadata().map_err(ReadProblem::Io)?;
    if let Some(kind) = file_kind(meta.file_type()) {
        return Err(ReadProblem::NotRegular(kind));
    }
    if meta.len() > cap {
        return Err(ReadProblem::TooLarge {
            size: meta.len(),
            cap,
        });
    }
    // A file that reports 0 bytes is read one byte at most: enough to tell empty from generated.
    let limit = if meta.len() == 0 { 1 } else { cap + 1 };
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(ReadProblem::Io)?;
    if meta.len() == 0 && !bytes.is_empty() {
        return Err(ReadProblem::Generated);
    }
    if bytes.len() as u64 > cap {
        return Err(ReadProblem::TooLarge {
            size: bytes.len() as u64,
            cap,
        });
    }
    if bytes.contains(&0) {
        return Err(ReadProblem::Binary);
    }
    String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        let line_start = valid
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |at| at + 1);
        // The bytes before the bad one on its line are valid UTF-8: count their characters.
        let column = 1 + String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count();
        ReadProblem::NotUtf8 {
            line: 1 + valid.iter().filter(|b| **b == b'\n').count(),
            column,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        for (path, kind) in [
            (Path::new("/dev/zero"), "a device"),
            (fifo.as_path(), "a FIFO"),
            (dir.path(), "a directory"),
        ] {
            match read_text_capped(path, 1 << 20) {
                Err(ReadProblem::NotRegular(found)) => assert_eq!(found, kind, "{path:?}"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn generated_files_oversize_binary_and_non_utf8_are_refused() {
        assert!(matches!(
            read_text_capped(Path::new("/proc/self/environ"), 1 << 20),
            Err(ReadProblem::Generated)
        ));
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        assert!(matches!(
            read_text_capped(&big, 1024),
            Err(ReadProblem::TooLarge {
                size: 2048,
                cap: 1024
            })
        ));
        let binary = dir.path().join("binary");
        std::fs::write(&binary, b"abc\0def").unwrap();
        assert!(matches!(
            read_text_capped(&binary, 1024),
            Err(ReadProblem::Binary)
        ));
        let latin1 = dir.path().join("latin1");
        std::fs::write(&latin1, b"one\ntwo\ncaf\xe9\n").unwrap();
        assert!(matches!(
            read_text_capped(&latin1, 1024),
            Err(ReadProblem::NotUtf8 { line: 3, column: 4 })
        ));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(read_text_capped(&empty, 1024).unwrap(), "");
        let text = dir.path().join("text");
        std::fs::write(&text, "hello\n").unwrap();
        assert_eq!(read_text_capped(&text, 1024).unwrap(), "hello\n");
    }

    #[test]
    fn sizes_are_said_in_the_largest_whole_unit() {
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(64 << 10), "64 KiB");
        assert_eq!(human_size(1000), "1000 bytes");
    }
}
