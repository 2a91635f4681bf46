//! Key slots: several passphrases open one repository; a removed one no longer does.

use serde_json::Value;

use crate::common::{Repo, assert_same_tree, sample_tree};

const NEW_PASSWORD: &str = "a second, different passphrase";

fn key_list(repo: &Repo, password: &str) -> Vec<Value> {
    let out = repo.run_with(Some(password), &["key", "list"]);
    out.expect_code(0);
    out.json().as_array().unwrap().clone()
}

#[test]
fn add_use_and_remove_a_passphrase() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    sample_tree(&src, 30);
    repo.snapshot(&src, &[]);
    let one = key_list(&repo, &repo.password);
    assert_eq!(one.len(), 1);
    let old_id = one[0]["id"].as_str().unwrap().to_string();

    let mut add = repo.command(&[
        "key",
        "add",
        "--label",
        "second",
        "--kdf-memory-mib",
        "8",
        "--kdf-iterations",
        "1",
    ]);
    add.env("AMBER_NEW_PASSWORD", NEW_PASSWORD);
    let out = crate::common::run_command(add);
    out.expect_code(0);
    let new_id = out.json()["added"].as_str().unwrap().to_string();
    assert_ne!(new_id, old_id);

    // The new passphrase opens the repository and reads its data.
    let dest = repo.scratch("restored");
    let out = repo.run_with(Some(NEW_PASSWORD), &["restore", "latest", dest.to_str().unwrap()]);
    out.expect_code(0);
    assert_same_tree(&src, &dest);

    let two = key_list(&repo, NEW_PASSWORD);
    assert_eq!(two.len(), 2, "{two:?}");
    for k in &two {
        assert_eq!(k["kdf_memory_kib"], 8 * 1024, "{k}");
        let is_new = k["id"] == new_id.as_str();
        assert_eq!(k["current"], is_new, "the slot that opened is current: {k}");
        if is_new {
            assert_eq!(k["label"], "second");
        }
    }

    // The slot in use cannot be removed.
    let before = repo.listing();
    repo.run_with(Some(NEW_PASSWORD), &["key", "remove", &new_id])
        .expect_error(&["refusing"]);
    assert_eq!(repo.listing(), before, "a refused key remove changed the store");

    // Removing the other slot works, by prefix; its passphrase then fails.
    let out = repo.run_with(Some(NEW_PASSWORD), &["key", "remove", &old_id[..8]]);
    out.expect_code(0);
    assert_eq!(out.json()["removed"], old_id.as_str());
    repo.run(&["snapshots"]).expect_error(&["wrong passphrase"]);
    assert_eq!(key_list(&repo, NEW_PASSWORD).len(), 1);
    // And the last slot cannot go either.
    repo.run_with(Some(NEW_PASSWORD), &["key", "remove", &new_id])
        .expect_error(&["refusing"]);
    let out = repo.run_with(Some(NEW_PASSWORD), &["snapshots"]);
    out.expect_code(0);
    assert_eq!(out.json().as_array().unwrap().len(), 1);
}
