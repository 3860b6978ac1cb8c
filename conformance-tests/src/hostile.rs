//! The hostile-input corpus, fed to every backend (DESIGN.md section 2).

use crate::factory::StoreFactory;
use crate::outcome::{RuleError, RuleResult};

/// NOT WRITTEN YET.
pub async fn hostile_identifiers_rejected_naming_field(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: hostile_identifiers_rejected_naming_field".into()))
}

/// NOT WRITTEN YET.
pub async fn hostile_text_rejected_by_backend(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: hostile_text_rejected_by_backend".into()))
}

/// NOT WRITTEN YET.
pub async fn hostile_but_valid_values_stored_verbatim(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: hostile_but_valid_values_stored_verbatim".into()))
}

/// NOT WRITTEN YET.
pub async fn hostile_cursors_and_limits_rejected(f: &dyn StoreFactory) -> RuleResult {
    let _ = f;
    Err(RuleError::Failed("NOT_WRITTEN_YET: hostile_cursors_and_limits_rejected".into()))
}
