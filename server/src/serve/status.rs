//! Engine errors as gRPC statuses.

use amber_engine::error::Error;
use tonic::{Code, Status};

/// The status a client sees for an engine error.
pub fn from_engine(e: &Error) -> Status {
    let code = match e {
        Error::InvalidArgument(_) | Error::Format(_) => Code::InvalidArgument,
        Error::NoSuchSnapshot(_) | Error::NoSuchPath(_) | Error::MissingBlob(_) => Code::NotFound,
        Error::AmbiguousSnapshot { .. } => Code::InvalidArgument,
        Error::LimitExceeded(_) => Code::ResourceExhausted,
        Error::Conflict(_) => Code::Aborted,
        Error::Backend(_) | Error::Io { .. } => Code::Unavailable,
        Error::Crypto(_) | Error::Corrupt { .. } => Code::DataLoss,
        _ => Code::Internal,
    };
    // The code already says "invalid argument" or "resource exhausted": do not repeat it.
    let message = match e {
        Error::InvalidArgument(m) | Error::LimitExceeded(m) => m.clone(),
        other => other.to_string(),
    };
    Status::new(code, message)
}

/// The lower-case name of a status code, for metrics and the audit log.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// INVALID_ARGUMENT with a message.
pub fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg)
}

/// FAILED_PRECONDITION with a message.
pub fn out_of_turn(msg: impl Into<String>) -> Status {
    Status::failed_precondition(msg)
}
