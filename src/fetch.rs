//! Fetching an image on proxfleet's side (`mode: upload`): stream a URL into a temporary file
//! while hashing it, and keep the file only if the checksum matches. The file is removed when
//! the returned handle is dropped.

use std::io::Write;

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
    let mut file = tempfile::NamedTempFile::new()?;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| http_error(e.to_string()))?;
        hasher.update(&chunk);
        file.write_all(&chunk)?;
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
