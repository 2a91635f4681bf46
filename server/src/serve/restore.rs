//! The Restore service: plans, chunks and tar streams.

use std::io::Write;
use std::sync::Arc;

use amber_engine::format::snapshot::SourceKind;
use amber_engine::format::tree::{Content, Entry, EntryKind};
use amber_engine::id::{ChunkId, TreeId};
use amber_engine::ops::content::{Piece, for_each_chunk, for_each_piece};
use amber_engine::ops::display_path;
use amber_engine::ops::image::{ImageFormat, write_image_archive};
use amber_engine::ops::repair::snapshots::lost_bytes;
use amber_engine::ops::tar::{recorded_diff_id, restore_tar};
use amber_engine::ops::walk::{find_dir, walk};
use amber_engine::repo::Repository;
use amber_proto::v1 as pb;
use amber_proto::v1::plan_message::Item;
use amber_proto::v1::restore_server::Restore;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::serve::convert;
use crate::serve::reader::{Out, resolve, stream};
use crate::serve::state::{Access, State};
use crate::serve::status::from_engine;

/// Most chunk references per plan message.
const PLAN_CHUNKS: usize = 4096;
/// Most ids per ReadChunks request.
const MAX_IDS: usize = 256;
/// Largest data piece sent.
const PIECE: usize = 1024 * 1024;

/// The Restore service.
pub struct RestoreService {
    state: Arc<State>,
}

impl RestoreService {
    /// A service over the server state.
    pub fn new(state: Arc<State>) -> Self {
        RestoreService { state }
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl Restore for RestoreService {
    type ReadPlanStream = Stream<pb::PlanMessage>;
    type ReadChunksStream = Stream<pb::ChunkPiece>;
    type ReadTarStream = Stream<pb::TarPiece>;
    type ReadImageStream = Stream<pb::TarPiece>;

    async fn read_plan(&self, req: Request<pb::ReadPlanRequest>) -> Result<Response<Self::ReadPlanStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Restore/ReadPlan", Access::Read, &req.get_ref().vault)?;
        let r = req.into_inner();
        let repo = caller.vault.repo.clone();
        let target = format!("plan {} {}", r.snapshot, display_path(&r.path));
        Ok(Response::new(stream(&self.state, caller, target, move |out| {
            plan(&repo, &r, out)
        })))
    }

    async fn read_chunks(
        &self,
        req: Request<pb::ReadChunksRequest>,
    ) -> Result<Response<Self::ReadChunksStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Restore/ReadChunks", Access::Read, &req.get_ref().vault)?;
        let ids = chunk_ids(&req.get_ref().ids)?;
        let repo = caller.vault.repo.clone();
        let target = format!("{} chunks", ids.len());
        Ok(Response::new(stream(&self.state, caller, target, move |out| {
            send_chunks(&repo, &ids, out)
        })))
    }

    async fn read_tar(&self, req: Request<pb::ReadTarRequest>) -> Result<Response<Self::ReadTarStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Restore/ReadTar", Access::Read, &req.get_ref().vault)?;
        let r = req.into_inner();
        let repo = caller.vault.repo.clone();
        let target = format!("tar {} from {}", r.snapshot, r.offset);
        Ok(Response::new(stream(&self.state, caller, target, move |out| {
            send_tar(&repo, &r, out)
        })))
    }

    async fn read_image(&self, req: Request<pb::ReadImageRequest>) -> Result<Response<Self::ReadImageStream>, Status> {
        let caller = self
            .state
            .authorize(&req, "/amber.v1.Restore/ReadImage", Access::Read, &req.get_ref().vault)?;
        let r = req.into_inner();
        let repo = caller.vault.repo.clone();
        let target = format!(
            "image {} as {}",
            r.snapshot,
            if r.format.is_empty() { "given" } else { &r.format }
        );
        Ok(Response::new(stream(&self.state, caller, target, move |out| {
            send_image(&repo, &r, out)
        })))
    }

    async fn cold_restore(&self, req: Request<pb::ColdRestoreRequest>) -> Result<Response<pb::ColdRestoreJob>, Status> {
        let caller = self.state.authorize(
            &req,
            "/amber.v1.Restore/ColdRestore",
            Access::Read,
            &req.get_ref().vault,
        )?;
        let r = req.into_inner();
        let target = format!("{} {}", if r.warm_up { "warm up" } else { "plan" }, r.snapshot);
        let (repo, token) = (caller.vault.repo.clone(), caller.principal.token_id.clone());
        let result = crate::serve::reader::blocking(move || crate::serve::cold::cold_restore(&repo, &r, &token)).await;
        match &result {
            Ok(_) => caller.finish_ok(&self.state, &target, ""),
            Err(status) => caller.finish(&self.state, &target, status),
        }
        result.map(Response::new)
    }
}

fn gone() -> Status {
    Status::cancelled("the client went away")
}

fn send_image(repo: &Repository, r: &pb::ReadImageRequest, out: &Out<pb::TarPiece>) -> Result<(), Status> {
    let (id, _) = resolve(repo, &r.snapshot, &r.environment)?;
    let format = match r.format.as_str() {
        "" => None,
        f => Some(ImageFormat::parse(f).map_err(|e| from_engine(&e))?),
    };
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut length = 0u64;
    let mut sink = PieceWriter {
        out,
        skip: 0,
        buf: Vec::with_capacity(PIECE),
    };
    let mut tee = Hashing {
        inner: &mut sink,
        sha: &mut sha,
        length: &mut length,
    };
    write_image_archive(repo, id, format, &mut tee).map_err(|e| from_engine(&e))?;
    sink.flush().map_err(|_| gone())?;
    let digest = format!("sha256:{}", hex::encode(sha.finish().as_ref()));
    if out.send(pb::TarPiece {
        data: Vec::new(),
        digest,
        length,
    }) {
        Ok(())
    } else {
        Err(gone())
    }
}

/// Hashes what passes through.
struct Hashing<'a> {
    inner: &'a mut dyn Write,
    sha: &'a mut ring::digest::Context,
    length: &'a mut u64,
}

impl Write for Hashing<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.sha.update(data.get(..n).unwrap_or_default());
        *self.length += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn plan(repo: &Repository, r: &pb::ReadPlanRequest, out: &Out<pb::PlanMessage>) -> Result<(), Status> {
    let (id, snap) = resolve(repo, &r.snapshot, &r.environment)?;
    if snap.source == SourceKind::TarLayer {
        return Err(Status::failed_precondition(format!(
            "snapshot {id} is a tar layer: read it with ReadTar"
        )));
    }
    let send = |item| {
        if out.send(pb::PlanMessage { item: Some(item) }) {
            Ok(())
        } else {
            Err(gone())
        }
    };
    send(Item::Start(pb::PlanStart {
        snapshot: Some(convert::snapshot_info(id, &snap)),
        verify_key: repo.keys().ids.chunk.as_bytes().to_vec(),
    }))?;
    let root = find_dir(repo, TreeId::new(snap.root), &r.path).map_err(|e| from_engine(&e))?;
    let mut entries = 0u64;
    let mut first_names = std::collections::HashSet::new();
    if let Some(root_entry) = snap.root_entry.as_ref().filter(|_| r.path.is_empty()) {
        entries += 1;
        send(Item::Entry(pb::PlanEntry {
            path: Vec::new(),
            meta: Some(convert::meta(root_entry)),
            damaged: false,
        }))?;
    }
    let mut visit = |path: &[u8], e: &Entry| -> amber_engine::error::Result<()> {
        entries += 1;
        let damaged = still_damaged(repo, e)?;
        let msg = Item::Entry(pb::PlanEntry {
            path: path.to_vec(),
            meta: Some(convert::meta(e)),
            damaged,
        });
        send(msg).map_err(|_| amber_engine::error::Error::Pipeline("client gone".into()))?;
        // Later names of a hard-linked file carry no chunks: the client links them.
        let linked = e.kind == EntryKind::File && e.nlink > 1 && !first_names.insert((e.device, e.inode));
        if linked {
            return Ok(());
        }
        if damaged && e.kind == EntryKind::File {
            send_damaged_chunks(repo, e, &send)
        } else {
            send_file_chunks(repo, &e.content, &send)
        }
    };
    walk(repo, root, b"", &mut visit).map_err(|e| from_engine(&e))?;
    send(Item::End(pb::PlanEnd { entries }))
}

fn send_file_chunks(
    repo: &Repository,
    content: &Content,
    send: &dyn Fn(Item) -> Result<(), Status>,
) -> amber_engine::error::Result<()> {
    let mut batch = Vec::new();
    let flush = |batch: &mut Vec<pb::ChunkRef>| {
        if batch.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(batch);
        send(Item::Chunks(pb::PlanChunks { chunks }))
            .map_err(|_| amber_engine::error::Error::Pipeline("client gone".into()))
    };
    for_each_chunk(repo, content, &mut |c| {
        batch.push(pb::ChunkRef {
            id: c.id.hash().as_bytes().to_vec(),
            length: c.len,
            lost: false,
        });
        if batch.len() >= PLAN_CHUNKS {
            flush(&mut batch)?;
        }
        Ok(())
    })?;
    flush(&mut batch)
}

/// Whether an entry a repair marked damaged still lacks data (a directory whose node does
/// not read, a file with bytes that cannot be read).
fn still_damaged(repo: &Repository, e: &Entry) -> amber_engine::error::Result<bool> {
    match e.content.refs() {
        _ if !e.content.is_damaged() => Ok(false),
        Content::Tree(sub) => Ok(repo.load_tree(*sub).is_err()),
        content => Ok(lost_bytes(repo, content, e.size)? > 0),
    }
}

/// The chunks of a file marked damaged, those that cannot be read marked `lost` (and the
/// bytes below an unreadable chunk-list node sent as lost zero-id chunks).
fn send_damaged_chunks(
    repo: &Repository,
    e: &Entry,
    send: &dyn Fn(Item) -> Result<(), Status>,
) -> amber_engine::error::Result<()> {
    let gone = || amber_engine::error::Error::Pipeline("client gone".into());
    let mut batch = Vec::new();
    let push = |batch: &mut Vec<pb::ChunkRef>, c: pb::ChunkRef| {
        batch.push(c);
        if batch.len() >= PLAN_CHUNKS {
            let chunks = std::mem::take(batch);
            send(Item::Chunks(pb::PlanChunks { chunks })).map_err(|_| gone())?;
        }
        Ok(())
    };
    for_each_piece(repo, &e.content, e.size, &mut |piece| match piece {
        Piece::Chunk(c) => {
            let good = c.id.is_hole() || repo.index().holds_good(&c.id.into())?;
            let lost = !good;
            let id = if lost {
                [0u8; 32].to_vec()
            } else {
                c.id.hash().as_bytes().to_vec()
            };
            push(
                &mut batch,
                pb::ChunkRef {
                    id,
                    length: c.len,
                    lost,
                },
            )
        }
        Piece::Lost(mut n) => {
            while n > 0 {
                let length = u32::try_from(n).unwrap_or(u32::MAX);
                push(
                    &mut batch,
                    pb::ChunkRef {
                        id: vec![0; 32],
                        length,
                        lost: true,
                    },
                )?;
                n -= u64::from(length);
            }
            Ok(())
        }
    })?;
    if !batch.is_empty() {
        send(Item::Chunks(pb::PlanChunks { chunks: batch })).map_err(|_| gone())?;
    }
    Ok(())
}

fn chunk_ids(raw: &[Vec<u8>]) -> Result<Vec<ChunkId>, Status> {
    if raw.len() > MAX_IDS {
        return Err(Status::resource_exhausted(format!(
            "{} ids: at most {MAX_IDS} per call",
            raw.len()
        )));
    }
    raw.iter()
        .map(|b| {
            let id = amber_engine::id::Hash32::from_slice(b)
                .map(ChunkId::new)
                .map_err(|_| Status::invalid_argument("a chunk id that is not 32 bytes"))?;
            if id.is_hole() {
                return Err(Status::invalid_argument("the hole id has no content to read"));
            }
            Ok(id)
        })
        .collect()
}

fn send_chunks(repo: &Repository, ids: &[ChunkId], out: &Out<pb::ChunkPiece>) -> Result<(), Status> {
    for (index, id) in ids.iter().enumerate() {
        // An id the vault never held is the request's fault, not lost data.
        if !repo.index().contains(&(*id).into()).map_err(|e| from_engine(&e))? {
            return Err(Status::not_found(format!("chunk {id} is not in this vault")));
        }
        let data = repo.read_chunk(*id).map_err(|e| from_engine(&e))?;
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let mut pieces = data.chunks(PIECE).peekable();
        let mut offset = 0u32;
        if pieces.peek().is_none()
            && !out.send(pb::ChunkPiece {
                index,
                offset,
                data: Vec::new(),
                last: true,
            })
        {
            return Err(gone());
        }
        while let Some(piece) = pieces.next() {
            let msg = pb::ChunkPiece {
                index,
                offset,
                data: piece.to_vec(),
                last: pieces.peek().is_none(),
            };
            offset += u32::try_from(piece.len()).unwrap_or(u32::MAX);
            if !out.send(msg) {
                return Err(gone());
            }
        }
    }
    Ok(())
}

fn send_tar(repo: &Repository, r: &pb::ReadTarRequest, out: &Out<pb::TarPiece>) -> Result<(), Status> {
    let (id, snap) = resolve(repo, &r.snapshot, &r.environment)?;
    if snap.source != SourceKind::TarLayer {
        return Err(Status::failed_precondition(format!("snapshot {id} is not a tar layer")));
    }
    let digest = recorded_diff_id(&snap).unwrap_or_default().to_string();
    let mut sink = PieceWriter {
        out,
        skip: r.offset,
        buf: Vec::with_capacity(PIECE),
    };
    let length = restore_tar(repo, id, &mut sink).map_err(|e| from_engine(&e))?;
    sink.flush().map_err(|_| gone())?;
    if r.offset > length {
        return Err(Status::out_of_range(format!(
            "offset {} is past the end ({length})",
            r.offset
        )));
    }
    if out.send(pb::TarPiece {
        data: Vec::new(),
        digest,
        length,
    }) {
        Ok(())
    } else {
        Err(gone())
    }
}

/// Cuts the rebuilt tar stream into pieces, skipping the first `skip` bytes.
struct PieceWriter<'a> {
    out: &'a Out<pb::TarPiece>,
    skip: u64,
    buf: Vec<u8>,
}

impl Write for PieceWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let skipped = usize::try_from(self.skip.min(data.len() as u64)).unwrap_or(data.len());
        self.skip -= skipped as u64;
        let mut rest = data.get(skipped..).unwrap_or_default();
        while !rest.is_empty() {
            let room = PIECE - self.buf.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() == PIECE {
                self.flush()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        if self.out.send(pb::TarPiece {
            data,
            ..Default::default()
        }) {
            Ok(())
        } else {
            Err(std::io::Error::other("the client went away"))
        }
    }
}
