//! `init`, `index`, `key`.

use std::process::ExitCode;

use amber_engine::repo::sync::rebuild_index;
use amber_engine::repo::{InitOptions, Repository};
use anyhow::{Context, Result};
use serde_json::json;

use crate::cli::{Global, IndexCommand, KdfArgs, KeyCommand};
use crate::context::{self, Ask, backend, cache_dir, passphrase};
use crate::output::{emit, put_path, put_time};

pub fn init(g: &Global, kdf: &KdfArgs, block_size_kib: u32) -> Result<ExitCode> {
    let ask = Ask::Twice("enter a passphrase for the new repository: ");
    let pass = passphrase(g.password_file.as_deref(), "AMBER_PASSWORD", ask)?;
    let url = context::store_url(g)?;
    if let Some(dir) = url.local_path() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let opts = InitOptions {
        kdf: context::kdf(kdf),
        label: context::default_label(),
        block_size: block_size_kib.saturating_mul(1024),
        ..InitOptions::default()
    };
    let repo = Repository::init(backend(g)?, &cache_dir(g), &pass, &opts)?;
    let vault = repo.config().vault_id.to_hex();
    let mut value = serde_json::Map::new();
    value.insert("vault_id".into(), json!(vault));
    put_path(&mut value, "repo", g.repo.as_os_str().as_encoded_bytes());
    emit(g.json, &serde_json::Value::Object(value), || {
        format!("created repository {vault} at {url}")
    });
    Ok(ExitCode::SUCCESS)
}

pub fn index(g: &Global, cmd: &IndexCommand) -> Result<ExitCode> {
    match cmd {
        IndexCommand::Rebuild => {
            let repo = context::open_fresh(g)?;
            let r = rebuild_index(&repo)?;
            for (name, why) in &r.unreadable {
                eprintln!("amber: left out {name}: {why}");
            }
            let unreadable: Vec<_> = r
                .unreadable
                .iter()
                .map(|(name, why)| json!({ "object": name, "error": why }))
                .collect();
            let value = json!({ "packs": r.packs, "blobs": r.blobs, "unreadable": unreadable });
            emit(g.json, &value, || {
                format!("index rebuilt from {} packs: {} blobs", r.packs, r.blobs)
            });
            if !r.unreadable.is_empty() {
                return Ok(ExitCode::from(crate::commands::EXIT_INCOMPLETE));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn key(g: &Global, cmd: KeyCommand) -> Result<ExitCode> {
    let repo = context::open(g)?;
    match cmd {
        KeyCommand::Add {
            new_password_file,
            label,
            kdf,
        } => {
            let ask = Ask::Twice("enter the new passphrase: ");
            let pass = passphrase(new_password_file.as_deref(), "AMBER_NEW_PASSWORD", ask)?;
            let label = label.unwrap_or_else(context::default_label);
            let id = repo.add_key(&pass, context::kdf(&kdf), &label)?;
            emit(g.json, &json!({ "added": id.to_hex() }), || {
                format!("added key slot {id}")
            });
        }
        KeyCommand::List => {
            let current = repo.current_slot();
            let slots = repo.list_keys()?;
            let value: Vec<_> = slots
                .iter()
                .map(|s| {
                    let mut obj = serde_json::Map::new();
                    obj.insert("id".into(), json!(s.id.to_hex()));
                    obj.insert("label".into(), json!(s.label));
                    put_time(&mut obj, "created", s.created.saturating_mul(1_000_000_000));
                    obj.insert("current".into(), json!(s.id == current));
                    obj.insert("kdf_memory_kib".into(), json!(s.kdf.memory_kib));
                    serde_json::Value::Object(obj)
                })
                .collect();
            emit(g.json, &json!(value), || {
                slots
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {} {}",
                            if s.id == current { "*" } else { " " },
                            s.id.short(),
                            s.label
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        KeyCommand::Remove { id } => {
            let removed = repo.remove_key(&id)?;
            emit(g.json, &json!({ "removed": removed.to_hex() }), || {
                format!("removed key slot {removed}")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
