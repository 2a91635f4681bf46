//! What every call shares: tokens, vaults, limits, metrics; and the check each call makes
//! before touching a vault.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use amber_engine::format::audit::AuditEvent;
use tokio::sync::Semaphore;
use tonic::{Code, Request, Status};

use crate::serve::audit;
use crate::serve::config::Limits;
use crate::serve::log::{self, Level};
use crate::serve::metrics::Metrics;
use crate::serve::status::code_name;
use crate::serve::tokens::{AuthError, Principal, Role, TokenStore};
use crate::serve::vaults::{Vault, Vaults};

/// What a call needs from its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Create snapshots: sidecar or admin.
    Write,
    /// List, read and restore: restore or admin.
    Read,
    /// Tokens and sharing: admin.
    Admin,
}

impl Access {
    fn allows(self, role: Role) -> bool {
        matches!(
            (self, role),
            (_, Role::Admin) | (Access::Write, Role::Sidecar) | (Access::Read, Role::Restore)
        )
    }
}

/// Server-wide state.
pub struct State {
    /// Bearer tokens.
    pub tokens: TokenStore,
    /// Hosted vaults.
    pub vaults: Vaults,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Limits from the configuration.
    pub limits: Limits,
    /// Set on SIGTERM: new pushes are refused.
    pub draining: AtomicBool,
    /// One permit per ingest stream.
    pub streams: Arc<Semaphore>,
    /// Pushes waiting for a permit.
    pub queued: std::sync::atomic::AtomicUsize,
}

/// An authorized call.
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// In which vault.
    pub vault: Arc<Vault>,
    /// Id for logs and the audit log.
    pub request_id: String,
    /// The method, e.g. `/amber.v1.Ingest/Push`.
    pub method: &'static str,
    started: Instant,
}

impl State {
    /// Checks the call's token, role and vault. `vault` is the vault the request names
    /// (empty: the token's). Another vault is PERMISSION_DENIED whether or not it exists,
    /// before anything is looked up in it.
    ///
    /// # Errors
    /// UNAUTHENTICATED for a missing, malformed, unknown or revoked token;
    /// PERMISSION_DENIED for a role or vault the token does not cover.
    pub fn authorize<T>(
        &self,
        req: &Request<T>,
        method: &'static str,
        access: Access,
        vault: &str,
    ) -> Result<Caller, Status> {
        let request_id = log::new_request_id();
        let header = req
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let principal = self.tokens.verify(header).map_err(|e| {
            self.refused(&request_id, method, Code::Unauthenticated, &e.to_string());
            unauthenticated(&e)
        })?;
        let vault_name = if vault.is_empty() {
            principal.vault.clone()
        } else {
            vault.to_string()
        };
        let denied = if vault_name != principal.vault {
            Some(format!("this token is not valid for vault {vault_name:?}"))
        } else if !access.allows(principal.role) {
            Some(format!("a {} token may not call {method}", principal.role.as_str()))
        } else {
            None
        };
        let own = self
            .vaults
            .get(&principal.vault)
            .ok_or_else(|| Status::unauthenticated("this token's vault is not hosted here"))?;
        let caller = Caller {
            principal,
            vault: own,
            request_id,
            method,
            started: Instant::now(),
        };
        if let Some(why) = denied {
            let status = Status::permission_denied(why);
            caller.finish(self, &vault_name, &status);
            return Err(status);
        }
        Ok(caller)
    }

    fn refused(&self, request_id: &str, method: &str, code: Code, why: &str) {
        self.metrics.error(code_name(code));
        log::event(
            Level::Warn,
            request_id,
            "call refused",
            &[("method", &method), ("reason", &why)],
        );
    }
}

fn unauthenticated(e: &AuthError) -> Status {
    Status::unauthenticated(format!("{e}; send `authorization: Bearer <token>`"))
}

impl Caller {
    /// Records the end of the call: audit log, metrics, structured log.
    pub fn finish(&self, state: &State, target: &str, status: &Status) {
        self.finish_with(state, target, status.code(), status.message());
    }

    /// Records a successful end of the call.
    pub fn finish_ok(&self, state: &State, target: &str, detail: &str) {
        self.finish_with(state, target, Code::Ok, detail);
    }

    fn finish_with(&self, state: &State, target: &str, code: Code, detail: &str) {
        let result = code_name(code);
        let elapsed = self.started.elapsed();
        state.metrics.request(self.method, elapsed, result);
        if code != Code::Ok {
            state.metrics.error(result);
        }
        let event = AuditEvent {
            request_id: self.request_id.clone(),
            token_id: self.principal.token_id.clone(),
            role: self.principal.role.as_str().to_string(),
            call: self.method.to_string(),
            target: target.to_string(),
            result: result.to_string(),
            detail: detail.to_string(),
        };
        audit::record(&self.vault, &event);
        let level = if code == Code::Ok { Level::Info } else { Level::Warn };
        let ms = elapsed.as_millis();
        log::event(
            level,
            &self.request_id,
            "call",
            &[
                ("method", &self.method),
                ("vault", &self.vault.name),
                ("token", &self.principal.token_id),
                ("target", &target),
                ("result", &result),
                ("ms", &ms),
                ("detail", &detail),
            ],
        );
    }
}

impl State {
    /// Whether SIGTERM has been received.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
