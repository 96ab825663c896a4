//! TLS of the agent's update-server client: the operator's CA bundle (`--ca-bundle`, for a
//! server whose certificate an internal CA issued), and telling a refused TLS handshake from
//! other transport failures (reason `tls`), so that an operator who forgot the bundle reads
//! "certificate not trusted", not a generic download error.
//!
//! Proxies are reqwest's own: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` from the
//! environment, honoured because the client builder never calls `no_proxy()`.

use std::path::{Path, PathBuf};

use crate::error::{FailureReason, UpdateFailure};

/// Why the `--ca-bundle` file cannot be used: a configuration error, found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    /// The file could not be read (missing, unreadable).
    #[error("CA bundle {path}: {source}")]
    Read {
        /// The bundle's path.
        path: PathBuf,
        /// What reading it said.
        #[source]
        source: std::io::Error,
    },
    /// A PEM section of the file is broken.
    #[error("CA bundle {path} is not a PEM certificate bundle: {message}")]
    Parse {
        /// The bundle's path.
        path: PathBuf,
        /// What the PEM reader said.
        message: String,
    },
    /// The file holds no `-----BEGIN CERTIFICATE-----` section.
    #[error("CA bundle {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    Empty {
        /// The bundle's path.
        path: PathBuf,
    },
    /// A certificate of the file cannot be a trust root (not X.509 DER inside the PEM).
    #[error("CA bundle {path} holds a certificate that cannot be trusted as a CA: {message}")]
    Unusable {
        /// The bundle's path.
        path: PathBuf,
        /// What the trust store said.
        message: String,
    },
}

/// The certificates of the PEM bundle at `path`, each checked to be usable as a trust root.
pub fn load_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, CaBundleError> {
    let pem = std::fs::read(path).map_err(|source| CaBundleError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| CaBundleError::Parse {
            path: path.to_owned(),
            message: causes(&e),
        })?;
    if certificates.is_empty() {
        return Err(CaBundleError::Empty {
            path: path.to_owned(),
        });
    }
    // The system verifier takes extra roots as raw DER and may parse them only on the first
    // handshake; a store of these roots alone parses each now, so a broken bundle fails the
    // start, not every later request.
    reqwest::Client::builder()
        .tls_certs_only(certificates.clone())
        .build()
        .map_err(|e| CaBundleError::Unusable {
            path: path.to_owned(),
            message: causes(&e),
        })?;
    Ok(certificates)
}

/// `builder` trusting the bundle at `bundle` (if any) on top of the system's roots.
pub fn with_bundle(
    builder: reqwest::ClientBuilder,
    bundle: Option<&Path>,
) -> Result<reqwest::ClientBuilder, CaBundleError> {
    Ok(match bundle {
        Some(path) => builder.tls_certs_merge(load_bundle(path)?),
        None => builder,
    })
}

/// `error` as `tls` when a TLS handshake failed (the server's certificate is not trusted, or
/// TLS itself failed), with the cause and what to do; `None` for any other failure.
pub fn tls_failure(error: &reqwest::Error) -> Option<UpdateFailure> {
    let rustls = rustls_cause(error)?;
    let url = error
        .url()
        .map_or_else(|| "the update server".to_owned(), ToString::to_string);
    let hint = match rustls {
        rustls::Error::InvalidCertificate(_) => {
            "; if an internal CA issued the server's certificate, give its certificate with \
             --ca-bundle / UPDATE_CA_BUNDLE"
        }
        _ => "",
    };
    Some(UpdateFailure::retryable(
        FailureReason::Tls,
        format!("TLS with {url} failed: {rustls}{hint}"),
    ))
}

/// The rustls error somewhere in `error`'s causes. An `io::Error` wrapping one (what the TLS
/// stream returns) hides it from `source()`, which skips to the wrapped error's own source:
/// look inside with `get_ref`.
fn rustls_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(rustls) = current.downcast_ref::<rustls::Error>() {
            return Some(rustls);
        }
        if let Some(inner) = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(rustls) = rustls_cause(inner) {
                return Some(rustls);
            }
        }
        cause = current.source();
    }
    None
}

/// `error` and its causes on one line (reqwest's own message omits them).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bundle_names_the_file() {
        let error = load_bundle(Path::new("/nonexistent/ca.pem")).expect_err("missing");
        assert!(matches!(error, CaBundleError::Read { .. }), "{error}");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    #[test]
    fn a_file_without_certificates_or_with_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a certificate\n").expect("write");
        let error = load_bundle(&text).expect_err("no certificate");
        assert!(matches!(error, CaBundleError::Empty { .. }), "{error}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let error = load_bundle(&broken).expect_err("broken certificate");
        assert!(
            matches!(
                error,
                CaBundleError::Unusable { .. } | CaBundleError::Parse { .. }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("broken.pem"), "{error}");
    }
}
