//! The revocation view: every revocation, in memory, and the one rule that decides whether a
//! key is revoked by them. Both backends keep one, so that a key without a use cap is admitted
//! without asking the database.

use std::collections::{HashMap, HashSet};

use valet_key::{KeyId, UnixTime};

use crate::{KeyUse, Revocation};

/// All revocations, in memory.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub(crate) keys: HashSet<KeyId>,
    pub(crate) subjects: HashMap<String, u64>,
    /// Keys issued before this are revoked (0: none).
    pub(crate) all_before: u64,
}

impl View {
    /// Whether `key` is revoked, and how: the one decision behind both [`crate::Ledger::admit`] and
    /// [`crate::Ledger::revocation`].
    pub(crate) fn revocation(&self, key: &KeyUse<'_>) -> Option<Revocation> {
        let issued = key.issued_at.0;
        if self.keys.contains(&key.key_id) {
            return Some(Revocation::Key);
        }
        if let Some(&before) = key.subject.and_then(|subject| self.subjects.get(subject)) {
            if issued < before {
                return Some(Revocation::Subject {
                    before: UnixTime(before),
                });
            }
        }
        if issued < self.all_before {
            return Some(Revocation::All {
                before: UnixTime(self.all_before),
            });
        }
        None
    }

    pub(crate) fn revoke_subject(&mut self, subject: &str, before: u64) {
        match self.subjects.get_mut(subject) {
            Some(known) => *known = (*known).max(before),
            None => {
                self.subjects.insert(subject.to_owned(), before);
            }
        }
    }
}
