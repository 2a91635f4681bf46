//! Key slots: creating, opening, adding and removing passphrases.

use crate::backend::{Backend, PutMode};
use crate::crypto::{KdfParams, MasterKey, SealKey, derive_kek, random_array};
use crate::error::{CryptoError, Error, Result};
use crate::format::keyslot::KeySlot;
use crate::id::{Hash32, KeySlotId, VaultId};
use crate::repo::layout::{KEYS_PREFIX, id_of_key, keyslot_key};

/// A key slot as listed.
#[derive(Clone, Debug)]
pub struct KeySlotInfo {
    /// Its id.
    pub id: KeySlotId,
    /// Its label.
    pub label: String,
    /// Creation time, seconds.
    pub created: i64,
    /// KDF cost.
    pub kdf: KdfParams,
}

/// Wraps `master` under `passphrase` in a new slot and stores it.
///
/// # Errors
/// [`Error::InvalidArgument`] for a weak KDF or empty passphrase; crypto and store errors.
pub fn create_slot(
    backend: &dyn Backend,
    vault: &VaultId,
    master: &MasterKey,
    passphrase: &[u8],
    kdf: KdfParams,
    label: &str,
    now: i64,
) -> Result<KeySlotId> {
    if passphrase.is_empty() {
        return Err(Error::InvalidArgument("the passphrase is empty".into()));
    }
    if kdf.memory_kib < KdfParams::MIN_MEMORY_KIB || kdf.iterations == 0 || kdf.parallelism == 0 {
        return Err(Error::InvalidArgument(format!(
            "KDF cost too low: at least {} KiB and one iteration",
            KdfParams::MIN_MEMORY_KIB
        )));
    }
    let slot_id = KeySlotId::new(Hash32::from_bytes(random_array()?));
    let mut slot = KeySlot {
        kdf,
        salt: random_array()?,
        created: now,
        label: label.chars().take(200).collect(),
        wrapped: Vec::new(),
    };
    let kek = SealKey::new(&derive_kek(passphrase, &slot.salt, kdf)?)?;
    slot.wrapped = kek.seal(&slot.aad(vault, &slot_id), master.bytes().to_vec())?;
    backend.put(&keyslot_key(&slot_id), &slot.encode(), PutMode::CreateOnly)?;
    Ok(slot_id)
}

/// Every slot in the store.
///
/// # Errors
/// Store or format errors.
pub fn list_slots(backend: &dyn Backend) -> Result<Vec<(KeySlotId, KeySlot)>> {
    let mut out = Vec::new();
    for obj in backend.list(KEYS_PREFIX)? {
        let Some(id) = id_of_key(&obj.key) else { continue };
        let slot = KeySlot::decode(&backend.get(&obj.key)?).map_err(|e| Error::Corrupt {
            kind: "key slot",
            id: id.to_hex(),
            detail: e.to_string(),
        })?;
        out.push((KeySlotId::new(id), slot));
    }
    Ok(out)
}

/// Tries every slot with the passphrase; returns the master key and the slot that opened.
///
/// # Errors
/// [`CryptoError::WrongPassphrase`] when none opens.
pub fn open_any(backend: &dyn Backend, vault: &VaultId, passphrase: &[u8]) -> Result<(MasterKey, KeySlotId)> {
    for (id, slot) in list_slots(backend)? {
        let kek = SealKey::new(&derive_kek(passphrase, &slot.salt, slot.kdf)?)?;
        if let Ok(plain) = kek.open(&slot.aad(vault, &id), &slot.wrapped, String::new) {
            let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| Error::Corrupt {
                kind: "key slot",
                id: id.to_hex(),
                detail: "wrapped key has the wrong length".into(),
            })?;
            return Ok((MasterKey::from_bytes(bytes), id));
        }
    }
    Err(CryptoError::WrongPassphrase.into())
}

/// Summaries of every slot.
///
/// # Errors
/// Store or format errors.
pub fn slot_infos(backend: &dyn Backend) -> Result<Vec<KeySlotInfo>> {
    Ok(list_slots(backend)?
        .into_iter()
        .map(|(id, s)| KeySlotInfo {
            id,
            label: s.label,
            created: s.created,
            kdf: s.kdf,
        })
        .collect())
}
