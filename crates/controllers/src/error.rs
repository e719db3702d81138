//! Errors of the controllers.

/// What can go wrong in a controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// An API call failed. Retryable: the key goes back to the queue with
    /// back-off (conflicts and not-found races heal on the next reconcile).
    #[error("{action}: {source}")]
    Api {
        /// What the controller was doing.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An object could not be encoded (a bug; not retryable by itself, but
    /// the object may change).
    #[error("encoding {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A watch stream or worker ended before shutdown was asked for.
    #[error("controller {0} stopped unexpectedly")]
    Stopped(&'static str),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ControllerError {
    /// Wraps a client error with what was being done.
    pub fn api(action: impl Into<String>, source: kube::Error) -> ControllerError {
        ControllerError::Api {
            action: action.into(),
            source,
        }
    }

    /// Whether the error is the API's 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ControllerError::Api { source, .. } if is_status(source, 404))
    }
}

/// Whether a client error is an API `Status` with this HTTP code.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
