//! Fetching an image on proxfleet's side (`mode: upload`): stream a URL into a temporary file
//! while hashing it, and keep the file only if the checksum matches; then decompress it when it
//! was published compressed (gzip, xz, zstd: Proxmox decompresses only ISO images), and check
//! that the bytes are what the name in the storage says (qcow2 or not). Files are removed when
//! their handles are dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use crate::spec::Compression;

use futures::StreamExt;
use sha2::Digest;

/// Why an image could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or answered with an error status.
    #[error("cannot fetch {url}: {message}")]
    Http {
        /// URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Writing the temporary file failed.
    #[error("cannot write the downloaded image: {0}")]
    Io(#[from] std::io::Error),
    /// The content does not have the expected checksum.
    #[error(
        "checksum mismatch for {url}: expected {algorithm}:{expected}, got {algorithm}:{actual}"
    )]
    Checksum {
        /// URL.
        url: String,
        /// Algorithm.
        algorithm: String,
        /// Expected hex digest.
        expected: String,
        /// Actual hex digest.
        actual: String,
    },
    /// The algorithm is not one proxfleet verifies.
    #[error("unsupported checksum algorithm `{0}`")]
    Algorithm(String),
    /// The verified file does not decompress.
    #[error("cannot decompress {url} as {format}: {message}")]
    Decompress {
        /// URL.
        url: String,
        /// `gzip`, `xz`, `zstd`.
        format: &'static str,
        /// Why.
        message: String,
    },
    /// The image is not in the format its name in the storage says, which Proxmox refuses.
    #[error("{0}")]
    Format(String),
}

/// An image ready to upload.
#[derive(Debug)]
pub struct Fetched {
    /// The file to upload (decompressed when it was published compressed).
    pub file: tempfile::NamedTempFile,
    /// Its checksum, for Proxmox to verify the upload: the spec's for a file uploaded as
    /// published, the sha256 of the decompressed bytes otherwise.
    pub checksum: (String, String),
}

/// Fetch an image for upload: download `url` and verify it against `algorithm:expected_hex`
/// (the file as published), decompress it when `compression` says so, and check that it is a
/// qcow2 image exactly when `stored_name` ends in `.qcow2`.
///
/// # Errors
/// The download or checksum fails, the file does not decompress, or its format is not the one
/// its name says.
pub async fn fetch_image(
    url: &str,
    algorithm: &str,
    expected_hex: &str,
    compression: Option<Compression>,
    stored_name: &str,
    progress: &(dyn Fn(u64, Option<u64>) + Sync),
) -> Result<Fetched, FetchError> {
    let published = fetch_verified(url, algorithm, expected_hex, progress).await?;
    let fetched = match compression {
        None => Fetched {
            file: published,
            checksum: (algorithm.to_string(), expected_hex.to_string()),
        },
        Some(compression) => {
            let url_owned = url.to_string();
            tokio::task::spawn_blocking(move || {
                decompress(published.path(), compression).map_err(|err| match err {
                    DecompressError::Io(err) => FetchError::Io(err),
                    DecompressError::Format(message) => FetchError::Decompress {
                        url: url_owned,
                        format: compression.as_str(),
                        message,
                    },
                })
            })
            .await
            .map_err(|err| FetchError::Io(std::io::Error::other(err)))??
        }
    };
    check_format(fetched.file.path(), url, stored_name)?;
    Ok(fetched)
}

enum DecompressError {
    Io(std::io::Error),
    Format(String),
}

/// Decompress `path` into a new temporary file, hashing what is written (sha256).
fn decompress(path: &Path, compression: Compression) -> Result<Fetched, DecompressError> {
    let mut input = BufReader::new(std::fs::File::open(path).map_err(DecompressError::Io)?);
    let mut output = HashingWriter {
        file: tempfile::NamedTempFile::new().map_err(DecompressError::Io)?,
        hasher: sha2::Sha256::new(),
    };
    // A decoder's `InvalidData` is the file's fault; any other error is the disk's.
    let copy = |reader: &mut dyn Read, output: &mut HashingWriter| {
        std::io::copy(reader, output).map_err(|err| match err.kind() {
            std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::UnexpectedEof => DecompressError::Format(err.to_string()),
            _ => DecompressError::Io(err),
        })
    };
    match compression {
        Compression::Gzip => {
            copy(&mut flate2::read::MultiGzDecoder::new(input), &mut output)?;
        }
        Compression::Xz => {
            copy(&mut lzma_rust2::XzReader::new(input, true), &mut output)?;
        }
        Compression::Zstd => {
            // One frame after the other, as `zstd -d` reads multi-frame files (pzstd's).
            loop {
                let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut input)
                    .map_err(|err| DecompressError::Format(err.to_string()))?;
                copy(&mut frame, &mut output)?;
                if input.fill_buf().map_err(DecompressError::Io)?.is_empty() {
                    break;
                }
            }
        }
    };
    output.file.flush().map_err(DecompressError::Io)?;
    Ok(Fetched {
        checksum: ("sha256".into(), hex::encode(output.hasher.finalize())),
        file: output.file,
    })
}

/// A file that hashes what is written to it.
struct HashingWriter {
    file: tempfile::NamedTempFile,
    hasher: sha2::Sha256,
}

impl Write for HashingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The qcow2 magic, `QFI\xfb`.
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// Proxmox checks that an uploaded image's format matches its extension; say it before the
/// upload, with the name that fits.
fn check_format(path: &Path, url: &str, stored_name: &str) -> Result<(), FetchError> {
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path)?;
    let n_read = file.read(&mut head)?;
    let qcow2 = n_read == 4 && &head == QCOW2_MAGIC;
    let (stem, ext) = stored_name.rsplit_once('.').unwrap_or((stored_name, ""));
    match ext {
        "qcow2" if !qcow2 => Err(FetchError::Format(format!(
            "{url} is not a qcow2 image (it does not start with qcow2's `QFI\\xfb`), so it cannot be stored as `{stored_name}`; if it is a raw disk image, set `file_name: {stem}.raw`"
        ))),
        "raw" if qcow2 => Err(FetchError::Format(format!(
            "{url} is a qcow2 image, so it cannot be stored as `{stored_name}`; set `file_name: {stem}.qcow2`"
        ))),
        _ => Ok(()),
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Download `url` into a temporary file and verify it against `algorithm:expected_hex`.
///
/// # Errors
/// The download fails, the file cannot be written, or the checksum differs.
pub async fn fetch_verified(
    url: &str,
    algorithm: &str,
    expected_hex: &str,
    progress: &(dyn Fn(u64, Option<u64>) + Sync),
) -> Result<tempfile::NamedTempFile, FetchError> {
    let mut hasher = match algorithm {
        "sha256" => Hasher::Sha256(sha2::Sha256::new()),
        "sha512" => Hasher::Sha512(sha2::Sha512::new()),
        other => return Err(FetchError::Algorithm(other.to_string())),
    };
    let http_error = |message: String| FetchError::Http {
        url: url.to_string(),
        message,
    };
    let response = reqwest::get(url)
        .await
        .map_err(|e| http_error(e.to_string()))?;
    let response = response
        .error_for_status()
        .map_err(|e| http_error(e.to_string()))?;
    let total = response.content_length();
    let mut file = tempfile::NamedTempFile::new()?;
    let mut stream = response.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| http_error(e.to_string()))?;
        hasher.update(&chunk);
        file.write_all(&chunk)?;
        received += chunk.len() as u64;
        progress(received, total);
    }
    file.flush()?;
    let actual = hasher.hex();
    if !actual.eq_ignore_ascii_case(expected_hex) {
        return Err(FetchError::Checksum {
            url: url.to_string(),
            algorithm: algorithm.to_string(),
            expected: expected_hex.to_string(),
            actual,
        });
    }
    Ok(file)
}
