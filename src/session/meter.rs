//! How a session's decisions are counted: each way a session ends, and each refusal,
//! as the label it gets in `/metrics` and the limit it hit, if any. The session calls
//! these where it decides; bytes and messages are counted on its WebSocket instead
//! (see `crate::metrics`).

use super::{
    hub::{LocalJoinError, RegisterError},
    refusal::{ConnectRefusal, ListenRefusal},
    End,
};
use crate::{
    metrics::{Limit, Metrics, RefusalKind, Request, SessionEnd},
    node::ConnectError,
};

/// The session ended with `end`.
pub(super) fn ended(metrics: &Metrics, end: &End) {
    let (reason, limit) = match end {
        End::Left => (SessionEnd::Left, None),
        End::Closed => (SessionEnd::Closed, None),
        End::Expired => (SessionEnd::Expired, None),
        End::WriteFailed => (SessionEnd::WriteFailed, None),
        End::Shutdown => (SessionEnd::Shutdown, None),
        End::Keepalive(_) => (SessionEnd::Keepalive, None),
        End::TooBig(_) => (SessionEnd::TooBig, Some(Limit::MessageSize)),
        End::TooMany(_) => (SessionEnd::TooMany, Some(Limit::Sessions)),
        End::Backlogged(_) => (SessionEnd::Backlogged, Some(Limit::ReplyBacklog)),
    };
    metrics.session_ended(reason);
    if let Some(limit) = limit {
        metrics.limit_hit(limit);
    }
}

/// A Listen was refused.
pub(super) fn listen_refused(metrics: &Metrics, refusal: &ListenRefusal) {
    let (kind, limit) = match refusal {
        ListenRefusal::BadProtocol(_) => (RefusalKind::BadProtocol, None),
        ListenRefusal::NotStarted => (RefusalKind::NotStarted, None),
        ListenRefusal::AlreadyListening => (RefusalKind::AlreadyListening, None),
        ListenRefusal::TooManyListeners(_) => {
            (RefusalKind::Limit, Some(Limit::ListenersPerSession))
        }
        ListenRefusal::Register(RegisterError::Taken) => (RefusalKind::ProtocolTaken, None),
        ListenRefusal::Register(RegisterError::AnnounceFull) => {
            (RefusalKind::Limit, Some(Limit::AnnounceBudget))
        }
        ListenRefusal::AlreadyAccepted => (RefusalKind::AlreadyAccepted, None),
    };
    count(metrics, Request::Listen, kind, limit);
}

/// A Connect was refused, or failed.
pub(super) fn connect_refused(metrics: &Metrics, refusal: &ConnectRefusal) {
    let (kind, limit) = match refusal {
        ConnectRefusal::BadProtocol(_) => (RefusalKind::BadProtocol, None),
        ConnectRefusal::NotStarted => (RefusalKind::NotStarted, None),
        ConnectRefusal::BadRelay(_) => (RefusalKind::BadRelay, None),
        ConnectRefusal::BadTarget(_) => (RefusalKind::BadTarget, None),
        ConnectRefusal::LocalTarget => (RefusalKind::LocalTarget, None),
        ConnectRefusal::TooManyStreams(_) => (RefusalKind::Limit, Some(Limit::StreamsPerSession)),
        ConnectRefusal::TooManyDials(_) => (RefusalKind::Limit, Some(Limit::DialsPerSession)),
        ConnectRefusal::Join(LocalJoinError::NotListening(_)) => (RefusalKind::NotListening, None),
        ConnectRefusal::Join(LocalJoinError::Busy(_)) => (RefusalKind::Busy, None),
        ConnectRefusal::Failed(failure) => match **failure {
            ConnectError::Unreachable { .. } => (RefusalKind::Unreachable, None),
            ConnectError::Unsupported { .. } => (RefusalKind::Unsupported, None),
            ConnectError::Timeout { .. } => (RefusalKind::Timeout, None),
            ConnectError::Stream { .. } => (RefusalKind::StreamFailed, None),
            ConnectError::TooManyStreams { .. } => {
                (RefusalKind::Limit, Some(Limit::StreamsPerPeer))
            }
            ConnectError::Stopped => (RefusalKind::Stopped, None),
            // Topic errors answer Subscribe (counted there), never a Connect.
            ConnectError::Topics(_) => (RefusalKind::Limit, None),
        },
    };
    count(metrics, Request::Connect, kind, limit);
}

fn count(metrics: &Metrics, request: Request, kind: RefusalKind, limit: Option<Limit>) {
    metrics.refused(request, kind);
    if let Some(limit) = limit {
        metrics.limit_hit(limit);
    }
}
