//! Tree pushes: entries in batches, the server asks for the files it needs, the client
//! sends only those.

use amber_engine::format::snapshot::SourceKind;
use amber_engine::id::TreeId;
use amber_engine::ops::assemble::{Added, TreeAssembler};
use amber_engine::repo::writer::BlobWriter;
use amber_proto::v1 as pb;
use amber_proto::v1::push_request::Frame;
use amber_proto::v1::push_response::Frame as Answer;
use tonic::Status;

use super::inbox::{Inbox, Outbox};
use super::journal::Journal;
use super::parent;
use super::session::Push;
use crate::serve::convert;
use crate::serve::status::{from_engine, invalid, out_of_turn};

/// Most entries (and skipped paths) in one batch.
pub const MAX_BATCH: usize = 1024;
/// Content received between checkpoints (flush, then journal the completed files).
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;
/// Files completed between checkpoints, so the list waiting to be journaled stays small
/// however small the files.
const CHECKPOINT_FILES: u64 = 10_000;

/// Runs a tree push after its header.
pub fn run(push: &Push, inbox: &mut Inbox, outbox: &Outbox) -> Result<pb::Committed, Status> {
    let repo = &push.vault().repo;
    let parent = parent::choose(push, SourceKind::Tree, &|_| true)?;
    let parent_root = parent.as_ref().map(|(_, s)| TreeId::new(s.root));
    let h = &push.header;
    let journal = Journal::open(
        push.vault(),
        &push.caller.principal.token_id,
        &h.resume_key,
        &h.source_path,
    );
    let resumed = journal.load();
    let resumed_files = resumed.len() as u64;
    let writer = BlobWriter::new(repo).map_err(|e| from_engine(&e))?;
    let mut asm = TreeAssembler::new(&writer, parent_root)
        .map_err(|e| from_engine(&e))?
        .with_resumed(resumed);
    if let Some(pb::push_header::Source::Tree(t)) = &h.source
        && let Some(meta) = &t.root
    {
        let entry = convert::entry(Vec::new(), Some(meta))?;
        asm.set_root_entry(entry).map_err(|e| from_engine(&e))?;
    }
    outbox.send(Answer::Accepted(pb::Accepted {
        request_id: push.caller.request_id.clone(),
        parent_id: parent.as_ref().map(|(id, _)| id.to_hex()).unwrap_or_default(),
        resumed_files,
        ..Default::default()
    }))?;
    let (received, tree) = {
        let mut rx = Receiver {
            asm,
            writer: &writer,
            journal: &journal,
            inbox,
            outbox,
            entries: 0,
            last_batch_seen: false,
            since_checkpoint: 0,
            files_since_checkpoint: 0,
            request_id: &push.caller.request_id,
        };
        if let Err(status) = rx.receive() {
            rx.save_progress();
            return Err(status);
        }
        (rx.inbox.received, rx.asm.finish().map_err(|e| from_engine(&e))?)
    };
    let written = writer.finish().map_err(|e| from_engine(&e))?;
    let (id, snap) = tree
        .commit(repo, &push.labels, parent.map(|p| p.0), h.source_path.clone(), &written)
        .map_err(|e| from_engine(&e))?;
    journal.remove();
    Ok(pb::Committed {
        snapshot_id: id.to_hex(),
        already_stored: false,
        stats: convert::snapshot_info(id, &snap).stats,
        bytes_received: received,
        reused: tree.files_reused,
        sent: tree.files_sent,
        empty_files: tree.files_empty,
    })
}

struct Receiver<'a, 'w> {
    asm: TreeAssembler<'w>,
    writer: &'w BlobWriter,
    journal: &'a Journal,
    inbox: &'a mut Inbox,
    outbox: &'a Outbox,
    entries: u64,
    last_batch_seen: bool,
    since_checkpoint: u64,
    files_since_checkpoint: u64,
    request_id: &'a str,
}

impl Receiver<'_, '_> {
    fn receive(&mut self) -> Result<(), Status> {
        loop {
            match self.inbox.next()? {
                Frame::Entries(batch) => self.batch(batch)?,
                Frame::Finish(f) => return self.finish(&f),
                _ => return Err(out_of_turn("only entries or Finish may come here")),
            }
        }
    }

    fn batch(&mut self, batch: pb::TreeEntries) -> Result<(), Status> {
        if self.last_batch_seen {
            return Err(out_of_turn("entries after the batch marked last"));
        }
        if batch.entries.len() > MAX_BATCH || batch.skipped.len() > MAX_BATCH {
            return Err(Status::resource_exhausted(format!(
                "a batch of {} entries and {} skipped paths: at most {MAX_BATCH} each",
                batch.entries.len(),
                batch.skipped.len()
            )));
        }
        let mut wanted = Vec::new();
        for e in batch.entries {
            self.entries += 1;
            let entry = convert::entry(e.name, e.meta.as_ref())?;
            if let Added::Wanted(i) = self.asm.add(e.parent, entry).map_err(|e| from_engine(&e))? {
                wanted.push(i);
            }
        }
        for s in batch.skipped {
            self.asm.skip(truncated(s.path, 4096), truncated(s.reason, 1024));
        }
        self.last_batch_seen = batch.last;
        self.outbox.send(Answer::FilesWanted(pb::FilesWanted {
            entries: wanted.clone(),
        }))?;
        for i in wanted {
            self.file(i)?;
        }
        Ok(())
    }

    fn file(&mut self, index: u64) -> Result<(), Status> {
        let mut offset = 0u64;
        let mut begun = false;
        loop {
            match self.inbox.next()? {
                Frame::FileData(d) if d.entry == index => {
                    self.piece(index, &mut begun, offset, d.offset)?;
                    self.asm.file_data(&d.data).map_err(|e| from_engine(&e))?;
                    offset += d.data.len() as u64;
                    self.since_checkpoint += d.data.len() as u64;
                }
                Frame::FileZeros(z) if z.entry == index => {
                    if z.length == 0 {
                        return Err(invalid(format!("entry {index}: a run of 0 zero bytes")));
                    }
                    self.piece(index, &mut begun, offset, z.offset)?;
                    self.asm.file_zeros(z.length).map_err(|e| from_engine(&e))?;
                    offset += z.length;
                }
                Frame::FileEnd(end) if end.entry == index => return self.end(index, begun, offset, end),
                _ => return Err(out_of_turn(format!("the content of entry {index} was expected"))),
            }
        }
    }

    /// Checks a piece's offset and begins the file at its first piece.
    fn piece(&mut self, index: u64, begun: &mut bool, offset: u64, at: u64) -> Result<(), Status> {
        if at != offset {
            return Err(invalid(format!(
                "entry {index}: a frame at offset {at} where {offset} was expected"
            )));
        }
        if !*begun {
            self.asm.begin_file(index).map_err(|e| from_engine(&e))?;
            *begun = true;
        }
        Ok(())
    }

    fn end(&mut self, index: u64, begun: bool, offset: u64, end: pb::FileEnd) -> Result<(), Status> {
        if !begun {
            self.asm.begin_file(index).map_err(|e| from_engine(&e))?;
        }
        if !end.error.is_empty() {
            self.asm
                .fail_file(index, truncated(end.error, 1024))
                .map_err(|e| from_engine(&e))?;
            return Ok(());
        }
        if end.size != offset {
            return Err(invalid(format!(
                "entry {index}: FileEnd announces {} bytes but {offset} arrived",
                end.size
            )));
        }
        self.asm.end_file(index, end.size).map_err(|e| from_engine(&e))?;
        self.files_since_checkpoint += 1;
        if self.since_checkpoint >= CHECKPOINT_BYTES || self.files_since_checkpoint >= CHECKPOINT_FILES {
            self.checkpoint()
                .map_err(|e| Status::unavailable(format!("checkpoint failed: {e}")))?;
        }
        Ok(())
    }

    fn finish(&mut self, f: &pb::Finish) -> Result<(), Status> {
        if !self.last_batch_seen {
            return Err(out_of_turn("Finish before the batch marked last"));
        }
        if f.count != self.entries {
            return Err(invalid(format!(
                "Finish counts {} entries but {} arrived",
                f.count, self.entries
            )));
        }
        Ok(())
    }

    /// Makes the completed files durable and journals them.
    fn checkpoint(&mut self) -> anyhow::Result<()> {
        let done = self.asm.completed_files();
        self.writer.flush()?;
        self.journal.append(&done)?;
        self.since_checkpoint = 0;
        self.files_since_checkpoint = 0;
        Ok(())
    }

    /// After a failure: keeps what was stored so a retry need not send it again.
    fn save_progress(&mut self) {
        if let Err(e) = self.checkpoint() {
            crate::serve::log::event(
                crate::serve::log::Level::Warn,
                self.request_id,
                "could not save the progress of a failed push",
                &[("error", &e)],
            );
        }
    }
}

fn truncated(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
