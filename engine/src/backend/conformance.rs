//! The checks every backend must pass, run by the tests of each backend (local, memory,
//! fault injection, prefix, S3 against a real server).
//!
//! [`run`] needs an empty store. It returns the first check that failed, so a caller's test
//! reports which property broke.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Backend, BackendError, CasOutcome, PutMode, PutOutcome, RestoreStatus, RetrievalTier, StorageClass};

/// Why a check failed.
pub type Failure = String;

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn err(what: &str, e: &BackendError) -> Failure {
    format!("{what}: {e}")
}

/// Runs every check on an empty store.
///
/// # Errors
/// The first check that failed.
pub fn run(b: &dyn Backend) -> Result<(), Failure> {
    reads_and_create_only(b)?;
    listing_pages(b)?;
    overwrite_and_compare_and_swap(b)?;
    storage_classes(b)?;
    deletes_and_keys(b)?;
    racing_writers(b)?;
    Ok(())
}

fn reads_and_create_only(b: &dyn Backend) -> Result<(), Failure> {
    let stat = b.stat("data/aa/x").map_err(|e| err("stat of an absent key", &e))?;
    check!(stat.is_none(), "stat of an absent key gave {stat:?}");
    check!(
        matches!(b.get("data/aa/x"), Err(BackendError::NotFound { .. })),
        "get of an absent key is not NotFound"
    );
    let first = b
        .put("data/aa/x", b"hello", PutMode::CreateOnly)
        .map_err(|e| err("put", &e))?;
    check!(first == PutOutcome::Created, "first create-only put gave {first:?}");
    let second = b
        .put("data/aa/x", b"other", PutMode::CreateOnly)
        .map_err(|e| err("second put", &e))?;
    check!(
        second == PutOutcome::AlreadyExisted,
        "second create-only put gave {second:?}"
    );
    let got = b.get("data/aa/x").map_err(|e| err("get", &e))?;
    check!(got == b"hello", "create-only put replaced the object: {got:?}");
    let range = b.get_range("data/aa/x", 1, 3).map_err(|e| err("get_range", &e))?;
    check!(range == b"ell", "get_range gave {range:?}");
    check!(
        matches!(b.get_range("data/aa/x", 3, 5), Err(BackendError::OutOfRange { .. })),
        "a range past the end is not OutOfRange"
    );
    let ranges = b
        .get_ranges("data/aa/x", &[(4, 1), (0, 2), (1, 1)])
        .map_err(|e| err("get_ranges", &e))?;
    check!(
        ranges == vec![b"o".to_vec(), b"he".to_vec(), b"e".to_vec()],
        "get_ranges gave {ranges:?}"
    );
    let upto = b
        .get_range_upto("data/aa/x", 3, 100)
        .map_err(|e| err("get_range_upto", &e))?;
    check!(upto == b"lo", "get_range_upto past the end gave {upto:?}");
    check!(
        matches!(
            b.get_range_upto("data/aa/x", 5, 1),
            Err(BackendError::OutOfRange { .. })
        ),
        "get_range_upto at the end is not OutOfRange"
    );
    let info = b.stat("data/aa/x").map_err(|e| err("stat", &e))?;
    let Some(info) = info else {
        return Err("stat of a written key gave None".into());
    };
    check!(info.size == 5 && info.key == "data/aa/x", "stat gave {info:?}");
    check!(
        info.class == StorageClass::Standard,
        "a new object is of class {}",
        info.class
    );
    check!(info.etag.is_some(), "stat gives no version tag");
    check!(
        info.modified.is_some_and(|t| t > 1_600_000_000),
        "stat gives no modification time: {:?}",
        info.modified
    );
    check!(
        b.head("data/aa/x").map_err(|e| err("head", &e))? == Some(5),
        "head gives the wrong size"
    );
    Ok(())
}

fn listing_pages(b: &dyn Backend) -> Result<(), Failure> {
    for key in ["data/bb/y", "data/cc/z", "data/dd/w", "meta/cc/z"] {
        b.put(key, b"12", PutMode::CreateOnly).map_err(|e| err("put", &e))?;
    }
    let keys: Vec<String> = b
        .list("data/")
        .map_err(|e| err("list", &e))?
        .into_iter()
        .map(|o| o.key)
        .collect();
    check!(
        keys == ["data/aa/x", "data/bb/y", "data/cc/z", "data/dd/w"],
        "list gave {keys:?}"
    );
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let page = b
            .list_page("data/", after.as_deref(), 3)
            .map_err(|e| err("list_page", &e))?;
        check!(page.objects.len() <= 3, "a page of 3 held {}", page.objects.len());
        paged.extend(page.objects.into_iter().map(|o| o.key));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    check!(paged == keys, "pages of 3 gave {paged:?}");
    let none = b.list("nothing/").map_err(|e| err("list", &e))?;
    check!(none.is_empty(), "list of an empty prefix gave {none:?}");
    let listed = b.list("data/bb/").map_err(|e| err("list", &e))?;
    check!(
        listed.len() == 1 && listed.first().is_some_and(|o| o.size == 2),
        "list of one object gave {listed:?}"
    );
    Ok(())
}

fn overwrite_and_compare_and_swap(b: &dyn Backend) -> Result<(), Failure> {
    check!(
        b.put("config", b"v1", PutMode::Overwrite).map_err(|e| err("put", &e))? == PutOutcome::Created,
        "overwrite put"
    );
    b.put("config", b"v2", PutMode::Overwrite).map_err(|e| err("put", &e))?;
    check!(
        b.get("config").map_err(|e| err("get", &e))? == b"v2",
        "overwrite did not replace"
    );
    let etag = version_of(b, "config")?;
    let replaced = b
        .put_if_match("config", b"v3", &etag)
        .map_err(|e| err("put_if_match", &e))?;
    check!(
        matches!(replaced, CasOutcome::Replaced(_)),
        "CAS with the current tag gave {replaced:?}"
    );
    let stale = b
        .put_if_match("config", b"v4", &etag)
        .map_err(|e| err("put_if_match", &e))?;
    check!(stale == CasOutcome::Conflict, "CAS with a stale tag gave {stale:?}");
    check!(
        b.get("config").map_err(|e| err("get", &e))? == b"v3",
        "a conflicting CAS wrote"
    );
    let absent = b
        .put_if_match("absent", b"x", &etag)
        .map_err(|e| err("put_if_match", &e))?;
    check!(absent == CasOutcome::Conflict, "CAS of an absent key gave {absent:?}");
    check!(
        b.stat("absent").map_err(|e| err("stat", &e))?.is_none(),
        "CAS created an absent key"
    );
    Ok(())
}

fn version_of(b: &dyn Backend, key: &str) -> Result<String, Failure> {
    b.stat(key)
        .map_err(|e| err("stat", &e))?
        .and_then(|o| o.etag)
        .ok_or_else(|| format!("no version tag for {key}"))
}

/// Classes: every store keeps `STANDARD`; one that has archive classes must refuse reads
/// of archived objects until they are restored.
fn storage_classes(b: &dyn Backend) -> Result<(), Failure> {
    b.set_storage_class("data/bb/y", &StorageClass::Standard)
        .map_err(|e| err("set_storage_class STANDARD", &e))?;
    let status = b.restore_status("data/bb/y").map_err(|e| err("restore_status", &e))?;
    check!(status == RestoreStatus::Readable, "a standard object is {status:?}");
    match b.set_storage_class("data/bb/y", &StorageClass::DeepArchive) {
        Err(BackendError::Unsupported { .. }) => return Ok(()),
        Err(e) => return Err(err("set_storage_class DEEP_ARCHIVE", &e)),
        Ok(()) => {}
    }
    let class = b.stat("data/bb/y").map_err(|e| err("stat", &e))?.map(|o| o.class);
    check!(
        class == Some(StorageClass::DeepArchive),
        "the class after a change is {class:?}"
    );
    check!(
        b.list("data/bb/")
            .map_err(|e| err("list", &e))?
            .first()
            .map(|o| &o.class)
            == Some(&StorageClass::DeepArchive),
        "listings do not show the class"
    );
    check!(
        matches!(b.get_range("data/bb/y", 0, 1), Err(BackendError::Archived { .. })),
        "an archived object can be read"
    );
    let status = b.restore_status("data/bb/y").map_err(|e| err("restore_status", &e))?;
    check!(status == RestoreStatus::Archived, "an archived object is {status:?}");
    b.request_restore("data/bb/y", 1, RetrievalTier::Bulk)
        .map_err(|e| err("request_restore", &e))?;
    for _ in 0..20 {
        match b.restore_status("data/bb/y").map_err(|e| err("restore_status", &e))? {
            RestoreStatus::Readable => {
                let got = b.get("data/bb/y").map_err(|e| err("get after restore", &e))?;
                check!(got == b"12", "restored bytes {got:?}");
                return Ok(());
            }
            RestoreStatus::InProgress => std::thread::sleep(std::time::Duration::from_millis(50)),
            RestoreStatus::Archived => return Err("a requested restore is not under way".into()),
        }
    }
    Err("a restore did not finish".into())
}

fn deletes_and_keys(b: &dyn Backend) -> Result<(), Failure> {
    b.delete("data/aa/x").map_err(|e| err("delete", &e))?;
    b.delete("data/aa/x").map_err(|e| err("second delete", &e))?;
    check!(
        b.head("data/aa/x").map_err(|e| err("head", &e))?.is_none(),
        "deleted object remains"
    );
    check!(
        b.put("../escape", b"", PutMode::CreateOnly).is_err(),
        "a key with .. was taken"
    );
    check!(b.get("/abs").is_err(), "an absolute key was taken");
    Ok(())
}

/// Writers in threads: of several create-only puts of one key exactly one creates it, and
/// increments by compare and swap lose no update.
fn racing_writers(b: &dyn Backend) -> Result<(), Failure> {
    const WRITERS: usize = 4;
    let created = AtomicUsize::new(0);
    b.put("race/counter", b"0", PutMode::Overwrite)
        .map_err(|e| err("put", &e))?;
    let results: Vec<Result<(), Failure>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|i| {
                let created = &created;
                s.spawn(move || {
                    let mine = format!("writer {i}");
                    if b.put("race/once", mine.as_bytes(), PutMode::CreateOnly)
                        .map_err(|e| err("put", &e))?
                        == PutOutcome::Created
                    {
                        created.fetch_add(1, Ordering::SeqCst);
                    }
                    increment(b, "race/counter")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a writer thread panicked".into())))
            .collect()
    });
    for r in results {
        r?;
    }
    let n = created.load(Ordering::SeqCst);
    check!(n == 1, "{n} racing create-only puts reported Created");
    let counter = b.get("race/counter").map_err(|e| err("get", &e))?;
    check!(
        counter == WRITERS.to_string().as_bytes(),
        "{WRITERS} compare-and-swap increments gave {:?}",
        String::from_utf8_lossy(&counter)
    );
    Ok(())
}

fn increment(b: &dyn Backend, key: &str) -> Result<(), Failure> {
    for _ in 0..200 {
        let etag = version_of(b, key)?;
        let now = b.get(key).map_err(|e| err("get", &e))?;
        // The bytes, read after the tag, may be newer than it: then the CAS fails and the
        // loop reads again, so no update is lost either way.
        let value: u64 = String::from_utf8_lossy(&now)
            .parse()
            .map_err(|_| "counter is not a number")?;
        let next = (value + 1).to_string();
        match b
            .put_if_match(key, next.as_bytes(), &etag)
            .map_err(|e| err("put_if_match", &e))?
        {
            CasOutcome::Replaced(_) => return Ok(()),
            CasOutcome::Conflict => std::thread::yield_now(),
        }
    }
    Err("an increment kept conflicting".into())
}
