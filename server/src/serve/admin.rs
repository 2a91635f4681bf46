//! The Admin service: tokens and sharing.

use std::sync::Arc;

use amber_proto::v1 as pb;
use amber_proto::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use amber_engine::format::audit::AuditEvent;
use tokio_stream::wrappers::ReceiverStream;

use crate::serve::audit;
use crate::serve::reader::{Out, blocking, stream};
use crate::serve::share::share_snapshot;
use crate::serve::state::{Access, Caller, State};
use crate::serve::tokens::{Role, TokenInfo};

/// The Admin service.
pub struct AdminService {
    state: Arc<State>,
}

impl AdminService {
    /// A service over the server state.
    pub fn new(state: Arc<State>) -> Self {
        AdminService { state }
    }

    fn done<T>(&self, caller: &Caller, target: &str, result: Result<T, Status>) -> Result<Response<T>, Status> {
        match &result {
            Ok(_) => caller.finish_ok(&self.state, target, ""),
            Err(status) => caller.finish(&self.state, target, status),
        }
        result.map(Response::new)
    }
}

/// The token role a wire role names.
///
/// # Errors
/// INVALID_ARGUMENT for an unset or unknown role.
pub fn role(r: i32) -> Result<Role, Status> {
    match pb::Role::try_from(r) {
        Ok(pb::Role::Sidecar) => Ok(Role::Sidecar),
        Ok(pb::Role::Restore) => Ok(Role::Restore),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        _ => Err(Status::invalid_argument("role must be sidecar, restore or admin")),
    }
}

fn wire_role(r: Role) -> pb::Role {
    match r {
        Role::Sidecar => pb::Role::Sidecar,
        Role::Restore => pb::Role::Restore,
        Role::Admin => pb::Role::Admin,
    }
}

/// A token's wire description.
pub fn info(t: &TokenInfo) -> pb::TokenInfo {
    pb::TokenInfo {
        id: t.id.clone(),
        role: wire_role(t.role) as i32,
        name: t.name.clone(),
        created_unix: t.created_unix,
        revoked_unix: t.revoked_unix,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Admin/CreateToken", Access::Admin, &req.get_ref().vault)?;
        let r = req.into_inner();
        let (state, vault) = (self.state.clone(), caller.vault.name.clone());
        // The token object is in the store (a bucket, perhaps): its compare-and-swap is
        // blocking I/O, kept off the async executor.
        let made = match role(r.role) {
            Ok(role) => tokio::task::spawn_blocking(move || state.tokens.create(&vault, role, &r.name))
                .await
                .map_err(|e| Status::internal(format!("token creation stopped: {e}")))
                .and_then(|made| made.map_err(|e| Status::invalid_argument(format!("{e:#}")))),
            Err(status) => Err(status),
        };
        let result = made.map(|(token, created)| pb::CreateTokenResponse {
            token,
            info: Some(info(&created)),
        });
        let target = match &result {
            Ok(r) => format!("token {}", r.info.as_ref().map(|i| i.id.as_str()).unwrap_or_default()),
            Err(_) => "token".into(),
        };
        self.done(&caller, &target, result)
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Admin/ListTokens", Access::Admin, &req.get_ref().vault)?;
        let tokens = self.state.tokens.list(&caller.vault.name).iter().map(info).collect();
        self.done(&caller, "tokens", Ok(pb::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Admin/RevokeToken", Access::Admin, &req.get_ref().vault)?;
        let id = req.into_inner().id;
        let (state, vault, which) = (self.state.clone(), caller.vault.name.clone(), id.clone());
        let result = tokio::task::spawn_blocking(move || state.tokens.revoke(&vault, &which))
            .await
            .map_err(|e| Status::internal(format!("token revocation stopped: {e}")))
            .and_then(|revoked| {
                revoked
                    .map(|t| pb::RevokeTokenResponse { info: Some(info(&t)) })
                    .map_err(|e| Status::not_found(format!("{e:#}")))
            });
        self.done(&caller, &format!("token {id}"), result)
    }

    async fn share_snapshot(
        &self,
        req: Request<pb::ShareSnapshotRequest>,
    ) -> Result<Response<pb::ShareSnapshotResponse>, Status> {
        let caller = self.state.authorize(
            &req,
            "/amber.v1.Admin/ShareSnapshot",
            Access::Admin,
            &req.get_ref().vault,
        )?;
        let r = req.into_inner();
        let target = format!("share {} to vault {}", r.snapshot, r.target_vault);
        let consent = self.consent(&r);
        let Ok(target_vault) = consent else {
            return self.done(&caller, &target, consent.map(|_| pb::ShareSnapshotResponse::default()));
        };
        let source = caller.vault.clone();
        let into = target_vault.clone();
        let (name, env) = (r.snapshot.clone(), r.environment.clone());
        let result = blocking(move || share_snapshot(&source, &into, &name, &env)).await;
        let target = match &result {
            Ok(done) => format!("{target} -> snapshot {}", done.snapshot_id),
            Err(_) => target,
        };
        let detail = format!(
            "from vault {} by token {}",
            caller.vault.name, caller.principal.token_id
        );
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        let other = AuditEvent {
            request_id: caller.request_id.clone(),
            token_id: caller.principal.token_id.clone(),
            role: "admin".into(),
            call: caller.method.to_string(),
            target: target.clone(),
            result: crate::serve::status::code_name(code).to_string(),
            detail,
        };
        audit::record(&target_vault, &other);
        self.done(&caller, &target, result)
    }

    type ListAuditStream = ReceiverStream<Result<pb::ListAuditResponse, Status>>;

    async fn list_audit(&self, req: Request<pb::ListAuditRequest>) -> Result<Response<Self::ListAuditStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Admin/ListAudit", Access::Admin, &req.get_ref().vault)?;
        let since = req.into_inner().since_unix_ms;
        let vault = caller.vault.clone();
        let produce = move |out: &Out<pb::ListAuditResponse>| audit::send_log(&vault, since, out);
        Ok(Response::new(stream(&self.state, caller, "audit log".into(), produce)))
    }

    type ForgetStream = ReceiverStream<Result<pb::ForgetEvent, Status>>;

    async fn forget(&self, req: Request<pb::ForgetRequest>) -> Result<Response<Self::ForgetStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Admin/Forget", Access::Admin, &req.get_ref().vault)?;
        let r = req.into_inner();
        let target = if r.dry_run { "dry run" } else { "vault" }.to_string();
        let repo = caller.vault.repo.clone();
        let produce = move |out: &Out<pb::ForgetEvent>| crate::serve::retention::send_forget(&repo, &r, out);
        Ok(Response::new(stream(&self.state, caller, target, produce)))
    }

    type CompactStream = ReceiverStream<Result<pb::CompactEvent, Status>>;

    async fn compact(&self, req: Request<pb::CompactRequest>) -> Result<Response<Self::CompactStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Admin/Compact", Access::Admin, &req.get_ref().vault)?;
        let r = req.into_inner();
        let target = if r.dry_run { "dry run" } else { "vault" }.to_string();
        let repo = caller.vault.repo.clone();
        let produce = move |out: &Out<pb::CompactEvent>| crate::serve::compact::send_run(&repo, &r, out);
        Ok(Response::new(stream(&self.state, caller, target, produce)))
    }

    type RepairSnapshotsStream = ReceiverStream<Result<pb::RepairSnapshotsEvent, Status>>;

    async fn repair_snapshots(
        &self,
        req: Request<pb::RepairSnapshotsRequest>,
    ) -> Result<Response<Self::RepairSnapshotsStream>, Status> {
        let caller = self.state.authorize(
            &req,
            "/amber.v1.Admin/RepairSnapshots",
            Access::Admin,
            &req.get_ref().vault,
        )?;
        let r = req.into_inner();
        let target = match (r.dry_run, r.snapshots.is_empty()) {
            (true, _) => "dry run".to_string(),
            (false, true) => "vault".to_string(),
            (false, false) => r.snapshots.join(" "),
        };
        let repo = caller.vault.repo.clone();
        let produce = move |out: &Out<pb::RepairSnapshotsEvent>| crate::serve::repair::send_run(&repo, &r, out);
        Ok(Response::new(stream(&self.state, caller, target, produce)))
    }

    type RepairIndexStream = ReceiverStream<Result<pb::RepairIndexEvent, Status>>;

    async fn repair_index(
        &self,
        req: Request<pb::RepairIndexRequest>,
    ) -> Result<Response<Self::RepairIndexStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Admin/RepairIndex", Access::Admin, &req.get_ref().vault)?;
        let r = req.into_inner();
        let target = if r.dry_run { "dry run" } else { "index" }.to_string();
        let repo = caller.vault.repo.clone();
        let produce = move |out: &Out<pb::RepairIndexEvent>| crate::serve::repair::send_index_run(&repo, &r, out);
        Ok(Response::new(stream(&self.state, caller, target, produce)))
    }

    async fn protect(&self, req: Request<pb::ProtectRequest>) -> Result<Response<pb::ProtectResponse>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Admin/Protect", Access::Admin, &req.get_ref().vault)?;
        let r = req.into_inner();
        let target = format!("{} {}", if r.protect { "protect" } else { "unprotect" }, r.snapshot);
        let repo = caller.vault.repo.clone();
        let result = blocking(move || crate::serve::retention::protect(&repo, &r)).await;
        self.done(&caller, &target, result)
    }

    type VerifyStream = ReceiverStream<Result<pb::VerifyResponse, Status>>;

    async fn verify(&self, req: Request<pb::VerifyRequest>) -> Result<Response<Self::VerifyStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Admin/Verify", Access::Admin, &req.get_ref().vault)?;
        let r = req.into_inner();
        let vault = caller.vault.clone();
        let target = if r.read_data || !r.read_data_subset.is_empty() {
            "vault, with data".to_string()
        } else {
            "vault".to_string()
        };
        let produce = move |out: &Out<pb::VerifyResponse>| crate::serve::verify::send_report(&vault, &r, out);
        Ok(Response::new(stream(&self.state, caller, target, produce)))
    }
}

impl AdminService {
    /// The target vault, if the request carries an admin token of it.
    fn consent(&self, r: &pb::ShareSnapshotRequest) -> Result<Arc<crate::serve::vaults::Vault>, Status> {
        let bearer = format!("Bearer {}", r.target_token);
        let refused = || Status::permission_denied(format!("no admin consent for vault {:?}", r.target_vault));
        let p = self.state.tokens.verify(Some(&bearer)).map_err(|_| refused())?;
        if p.vault != r.target_vault || p.role != Role::Admin {
            return Err(refused());
        }
        self.state.vaults.get(&r.target_vault).ok_or_else(refused)
    }
}
